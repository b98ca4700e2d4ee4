//! The JSON side's URL map: the SMS upload endpoint, the read API, replays, health
//! checks, and JSON errors for unknown paths and wrong methods.

mod health;
mod ingest;
mod read_api;
mod replays;

use actix_web::{web, HttpRequest, HttpResponse};

use super::error;

pub fn configure(cfg: &mut web::ServiceConfig) {
    // `[^/]*` lets an empty task id reach the handler and get its 400.
    for path in [
        "/v3/tasks/{task_id:[^/]*}/consistency-result",
        "/v3/{task_id:[^/]*}/consistency-result",
    ] {
        cfg.service(
            web::resource(path)
                .route(web::post().to(ingest::upload))
                .default_service(not_allowed("POST")),
        );
    }
    read_api::configure(cfg);
    cfg.service(
        web::resource("/api/v1/replays")
            .route(web::post().to(replays::create))
            .default_service(not_allowed("POST")),
    );
    cfg.service(get_resource("/healthz", health::healthz))
        .service(get_resource("/readyz", health::readyz));
    cfg.default_service(web::to(unknown_path));
}

/// A GET route that answers other methods 405 (JSON or a page, by path).
pub fn get_resource<F, Args>(path: &str, handler: F) -> actix_web::Resource
where
    F: actix_web::Handler<Args>,
    Args: actix_web::FromRequest + 'static,
    F::Output: actix_web::Responder + 'static,
{
    web::resource(path)
        .route(web::get().to(handler))
        .default_service(not_allowed("GET"))
}

/// 405 for the methods a resource does not take, in the shape of the path's side
/// (JSON or a page), with `Allow: allow`.
pub fn not_allowed(allow: &'static str) -> actix_web::Route {
    web::to(move |req: HttpRequest| async move {
        Err::<HttpResponse, _>(error::method_not_allowed(&req, allow))
    })
}

async fn unknown_path(req: HttpRequest) -> Result<HttpResponse, actix_web::Error> {
    Err(error::not_found(&req, None))
}

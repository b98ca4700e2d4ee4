//! The documentation is generated where it can be, and held to the code:
//! `docs/cli.md` is what `sms-audit man --markdown` prints.

#[test]
fn the_cli_reference_is_what_the_code_generates() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/cli.md");
    let committed = std::fs::read_to_string(&path).expect("docs/cli.md exists");
    let generated = sms_audit::cli::markdown_reference();
    assert!(
        committed == generated,
        "docs/cli.md differs from the code's: run `cargo run -- man --markdown > docs/cli.md`"
    );
    // The reference covers every command and the flags a reader looks for.
    for needle in [
        "## `sms-audit serve`",
        "--listen",
        "## `sms-audit evidence export`",
    ] {
        assert!(generated.contains(needle), "{needle}");
    }
}

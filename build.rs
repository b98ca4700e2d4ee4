fn main() {
    // refinery embeds migrations at compile time: the service's and the witness's.
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-changed=witness-migrations");
}

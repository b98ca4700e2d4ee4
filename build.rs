fn main() {
    // refinery embeds migrations at compile time.
    println!("cargo:rerun-if-changed=migrations");
}

fn main() {
    // The window's files are embedded in the binary: rebuild when they change.
    println!("cargo:rerun-if-changed=../ui");
    tauri_build::build()
}

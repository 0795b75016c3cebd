//! `sqlx::migrate!` in `database.rs` embeds the Postgres migrations when this crate compiles;
//! rebuild when they change, as `shared` does (shared/build.rs).
fn main() {
    println!("cargo:rerun-if-changed=../migrations/postgres");
}

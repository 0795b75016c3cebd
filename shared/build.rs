//! `sqlx::migrate!` embeds the migrations when this crate compiles; without this, editing or
//! adding one would leave binaries built before it with the old set (and `migrate` would refuse
//! a database migrated by a fresher build: "previously applied but has been modified").
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}

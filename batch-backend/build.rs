//! Keeps the job store's SQLite private to it.
//!
//! rusqlite and sqlx link their own SQLite (`libsqlite3-sys`, feature `bundled`), while GDAL
//! and PROJ link Debian's `libsqlite3.so`. By default the linker exports every symbol of the
//! executable that a shared library on its command line refers to, so GDAL's `sqlite3_*`
//! calls bound to the bundled copy, and so did the system copy's own calls to its exported
//! functions: PROJ's first `sqlite3_initialize` (on the system copy) registered the system
//! copy's unix VFS as the *bundled* copy's default. Connections opened after that used
//! another VFS, with its own table of open files and locks, than those opened before; the
//! second truncated the first's WAL index, and the job store read a malformed database or
//! died of SIGBUS. `--exclude-libs ALL` exports nothing from static libraries and rlibs, so
//! each copy keeps to itself (`store::tests::gdal_leaves_the_store_s_sqlite_alone`).

fn main() {
    // sqlx's `migrate!` embeds the migration files: a new one must rebuild the crate.
    println!("cargo:rerun-if-changed=migrations");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg=-Wl,--exclude-libs,ALL");
    }
}

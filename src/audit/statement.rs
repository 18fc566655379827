//! The SQLite audit writer's statements, prepared once on its connection and
//! bound without copies: the one place in keygate that calls SQLite's C API
//! itself, and the only `unsafe` code.
//!
//! rusqlite binds every text value with `SQLITE_TRANSIENT`, so SQLite
//! allocates and copies each one (a row has eight), and `prepare_cached`
//! hashes the statement's text and copies it into a new key on every use
//! (five kilobytes for the 64-row INSERT). Together a fifth of the writer's
//! time per row in the bench's profile. Here a value is bound
//! `SQLITE_STATIC`: SQLite reads it in place while the statement runs, and
//! [`Prepared::run`] takes the values only for that long.

use std::ffi::{c_int, CStr};
use std::ptr::{self, NonNull};

use rusqlite::ffi;

/// A value to bind: what an audit column holds.
pub enum Value<'a> {
    Null,
    Integer(i64),
    Text(&'a str),
}

impl<'a> From<Option<&'a str>> for Value<'a> {
    fn from(text: Option<&'a str>) -> Self {
        text.map_or(Value::Null, Value::Text)
    }
}

impl From<Option<i64>> for Value<'_> {
    fn from(number: Option<i64>) -> Self {
        number.map_or(Value::Null, Value::Integer)
    }
}

impl From<Option<i32>> for Value<'_> {
    fn from(number: Option<i32>) -> Self {
        number.map_or(Value::Null, |n| Value::Integer(i64::from(n)))
    }
}

/// One prepared statement of `conn`.
///
/// It must not outlive its connection: the owner declares it before the
/// connection, so it is finalized first (fields drop in order). It is used
/// only through `&mut self` on the thread that owns both.
pub struct Prepared {
    stmt: NonNull<ffi::sqlite3_stmt>,
    db: NonNull<ffi::sqlite3>,
    parameters: usize,
}

// SAFETY: a statement may move between threads with its connection (SQLite
// is built thread-safe, and rusqlite's `Connection` is `Send`); `Prepared`
// is never shared, every use takes `&mut self`.
unsafe impl Send for Prepared {}

impl Prepared {
    /// Prepares `sql` (one statement) for repeated use on `conn`.
    pub fn new(conn: &rusqlite::Connection, sql: &str) -> rusqlite::Result<Self> {
        // SAFETY: the handle is `conn`'s, open for as long as `conn` lives;
        // the statement is finalized before it (see the type's comment).
        let db = unsafe { conn.handle() };
        let db = NonNull::new(db).ok_or_else(|| misuse("the connection is closed"))?;
        let length = c_int::try_from(sql.len()).map_err(|_| misuse("the statement is too long"))?;
        let mut stmt = ptr::null_mut();
        // SAFETY: `sql` is valid for `length` bytes (no NUL needed with a
        // length); `stmt` receives the statement or null.
        let rc = unsafe {
            ffi::sqlite3_prepare_v3(
                db.as_ptr(),
                sql.as_ptr().cast(),
                length,
                ffi::SQLITE_PREPARE_PERSISTENT as _,
                &mut stmt,
                ptr::null_mut(),
            )
        };
        check(db, rc)?;
        let stmt = NonNull::new(stmt).ok_or_else(|| misuse("no statement in the text"))?;
        // SAFETY: a statement just prepared.
        let parameters = unsafe { ffi::sqlite3_bind_parameter_count(stmt.as_ptr()) } as usize;
        Ok(Self { stmt, db, parameters })
    }

    /// Binds `values`, one per parameter in order, runs the statement to
    /// its end and resets it. The values are read in place, so they are
    /// borrowed until this returns; the bindings are cleared before it does.
    pub fn run<'v>(&mut self, values: impl IntoIterator<Item = Value<'v>>) -> rusqlite::Result<()> {
        let bound = self.bind(values);
        let ran = bound.and_then(|()| {
            // SAFETY: a valid statement, every parameter bound (checked).
            match unsafe { ffi::sqlite3_step(self.stmt.as_ptr()) } {
                ffi::SQLITE_DONE => Ok(()),
                ffi::SQLITE_ROW => Err(misuse("the statement returned rows")),
                rc => check(self.db, rc),
            }
        });
        // SAFETY: a valid statement. `reset` repeats the step's error, which
        // `ran` already holds; clearing drops every pointer into `values`.
        unsafe {
            ffi::sqlite3_reset(self.stmt.as_ptr());
            ffi::sqlite3_clear_bindings(self.stmt.as_ptr());
        }
        ran
    }

    fn bind<'v>(&mut self, values: impl IntoIterator<Item = Value<'v>>) -> rusqlite::Result<()> {
        let stmt = self.stmt.as_ptr();
        let mut count = 0;
        for value in values {
            count += 1;
            if count > self.parameters {
                return Err(misuse("more values than parameters"));
            }
            let at = count as c_int;
            // SAFETY: a valid statement and a parameter index in range. A
            // text is bound SQLITE_STATIC: it stays borrowed, unchanged,
            // until `run` has reset the statement and cleared the bindings.
            let rc = unsafe {
                match value {
                    Value::Null => ffi::sqlite3_bind_null(stmt, at),
                    Value::Integer(n) => ffi::sqlite3_bind_int64(stmt, at, n),
                    Value::Text(text) => {
                        let length = c_int::try_from(text.len()).map_err(|_| misuse("a value is too long"))?;
                        ffi::sqlite3_bind_text(stmt, at, text.as_ptr().cast(), length, ffi::SQLITE_STATIC())
                    }
                }
            };
            check(self.db, rc)?;
        }
        if count != self.parameters {
            return Err(misuse("fewer values than parameters"));
        }
        Ok(())
    }
}

impl Drop for Prepared {
    fn drop(&mut self) {
        // SAFETY: the statement is finalized once, before its connection
        // closes (see the type's comment).
        unsafe {
            ffi::sqlite3_finalize(self.stmt.as_ptr());
        }
    }
}

/// `rc` as rusqlite's error, with SQLite's message for the connection.
fn check(db: NonNull<ffi::sqlite3>, rc: c_int) -> rusqlite::Result<()> {
    if rc == ffi::SQLITE_OK {
        return Ok(());
    }
    // SAFETY: an open connection; the message is a NUL-terminated string
    // SQLite owns, copied before any other call on the connection.
    let message = unsafe { CStr::from_ptr(ffi::sqlite3_errmsg(db.as_ptr())) }.to_string_lossy().into_owned();
    Err(rusqlite::Error::SqliteFailure(ffi::Error::new(rc), Some(message)))
}

fn misuse(why: &str) -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(ffi::Error::new(ffi::SQLITE_MISUSE), Some(why.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> rusqlite::Connection {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (a TEXT, b INTEGER, c TEXT NOT NULL)").unwrap();
        conn
    }

    #[test]
    fn values_are_written_as_bound_and_the_statement_runs_again() {
        let conn = table();
        let mut insert = Prepared::new(&conn, "INSERT INTO t (a, b, c) VALUES (?, ?, ?), (?, ?, ?)").unwrap();
        for round in 0..3_i64 {
            // Each round's texts are dropped after the call: SQLite must
            // not read them afterwards.
            let (first, second) = (format!("first {round}"), format!("é{round}"));
            insert
                .run([
                    Value::Text(&first),
                    Value::Integer(round),
                    Value::Text(""),
                    Value::Null,
                    Value::from(Some(i32::MAX)),
                    Value::Text(&second),
                ])
                .unwrap();
        }
        let rows: Vec<(Option<String>, Option<i64>, String)> = conn
            .prepare("SELECT a, b, c FROM t ORDER BY rowid")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(rows.len(), 6);
        assert_eq!(rows[4], (Some("first 2".into()), Some(2), String::new()));
        assert_eq!(rows[5], (None, Some(i64::from(i32::MAX)), "é2".into()));
    }

    #[test]
    fn a_failing_run_says_why_and_leaves_the_statement_usable() {
        let conn = table();
        let mut insert = Prepared::new(&conn, "INSERT INTO t (a, b, c) VALUES (?, ?, ?)").unwrap();
        let refused = insert.run([Value::Null, Value::Null, Value::Null]).unwrap_err();
        assert!(refused.to_string().contains("NOT NULL constraint failed: t.c"), "{refused}");
        let few = insert.run([Value::Null]).unwrap_err();
        assert!(few.to_string().contains("fewer values than parameters"), "{few}");
        let many = insert.run([Value::Null, Value::Null, Value::Text("x"), Value::Null]).unwrap_err();
        assert!(many.to_string().contains("more values than parameters"), "{many}");
        insert.run([Value::Text("kept"), Value::Integer(1), Value::Text("x")]).unwrap();
        let count: i64 = conn.query_row("SELECT count(*) FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(count, 1, "only the good run wrote a row");
        let Err(unknown) = Prepared::new(&conn, "INSERT INTO nowhere VALUES (?)") else { panic!("prepared") };
        assert!(unknown.to_string().contains("no such table: nowhere"), "{unknown}");
    }
}

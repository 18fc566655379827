//! The tracing subscriber: log lines on stderr (stdout is kept for command
//! output such as a new token), filtered by `RUST_LOG`. `--log-format text`
//! (the default) writes human-readable lines; `--log-format json` one JSON
//! object per line: `timestamp`, `level`, `message` and the event's own
//! fields at the top, and `span` with the request's `id`, `method` and
//! `path` (see `request_id::KeygateRootSpan`) for lines written while a
//! request is served. Neither format ever carries a secret: nothing logs
//! one, and `tests/api/tokens.rs` scans both formats for them.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

pub fn init(default_filter: &str, format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).with_span_list(false).try_init(),
    };
}

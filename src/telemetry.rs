//! The tracing subscriber: log lines on stderr (stdout is kept for command
//! output such as a new token), filtered by `RUST_LOG`. `--log-format text`
//! (the default) writes human-readable lines; `--log-format json` one JSON
//! object per line: `timestamp`, `level`, `message` and the event's own
//! fields at the top, and `span` with the request's `id`, `method` and
//! `path` (see `request_id::KeygateRootSpan`) for lines written while a
//! request is served. Neither format ever carries a secret: nothing logs
//! one, and `tests/api/tokens.rs` scans both formats for them.

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::LogFormat;

pub fn init(default_filter: &str, format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let layer = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_target(false).boxed(),
        LogFormat::Json => json_layer(std::io::stderr).boxed(),
    };
    let _ = tracing_subscriber::registry().with(filter).with(layer).try_init();
}

/// The `--log-format json` layer, writing to `writer` (the test suite
/// captures it to scan it for secrets).
pub fn json_layer<S, W>(writer: W) -> impl Layer<S> + Send + Sync
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .with_writer(writer)
}

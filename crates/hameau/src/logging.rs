//! Logs with `tracing`: human-readable on a terminal, JSON lines under systemd or when
//! piped. `HAMEAU_LOG` (a tracing filter) overrides the configured level; otherwise the
//! level follows `[log] level`, also when SIGHUP re-reads it.

use std::io::IsTerminal;

use hameau_config::{LogFormat, LogLevel};
use tracing_subscriber::EnvFilter;

/// Applies a re-read `[log]` section's level to the running logger (its format stays).
pub type Reload = Box<dyn Fn(&hameau_config::Log) + Send + Sync>;

pub fn init(config: &hameau_config::Log) -> Reload {
    let from_env = std::env::var("HAMEAU_LOG").ok().and_then(|filter| EnvFilter::try_new(filter).ok());
    let pinned = from_env.is_some();
    let filter = from_env.unwrap_or_else(|| EnvFilter::new(level(config.level)));
    let terminal = std::io::stderr().is_terminal();
    let json = match config.format {
        LogFormat::Auto => !terminal,
        LogFormat::Text => false,
        LogFormat::Json => true,
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    // The filter is wrapped for reloading last: its type names the formatter's.
    let apply: Box<dyn Fn(EnvFilter) -> bool + Send + Sync> = if json {
        let builder = builder.json().flatten_event(true).with_current_span(false).with_filter_reloading();
        let handle = builder.reload_handle();
        builder.init();
        Box::new(move |filter| handle.reload(filter).is_ok())
    } else {
        let builder = builder.with_ansi(terminal).with_filter_reloading();
        let handle = builder.reload_handle();
        builder.init();
        Box::new(move |filter| handle.reload(filter).is_ok())
    };
    Box::new(move |log: &hameau_config::Log| {
        if pinned {
            tracing::warn!("log.level changed, but HAMEAU_LOG sets the filter: kept");
        } else if apply(EnvFilter::new(level(log.level))) {
            tracing::info!(level = level(log.level), "log level changed");
        }
    })
}

/// The filter of `log.level`. PostgreSQL's notices ("schema already exists, skipping" at
/// each start) are shown from debug on only.
fn level(level: LogLevel) -> &'static str {
    match level {
        LogLevel::Error => "error",
        LogLevel::Warn => "warn",
        LogLevel::Info => "info,sqlx::postgres::notice=warn",
        LogLevel::Debug => "debug",
        LogLevel::Trace => "trace",
    }
}

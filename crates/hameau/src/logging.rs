//! Logs with `tracing`: human-readable on a terminal, JSON lines under systemd or when
//! piped. `HAMEAU_LOG` (a tracing filter) overrides the configured level.

use std::io::IsTerminal;

use hameau_config::{LogFormat, LogLevel};
use tracing_subscriber::EnvFilter;

pub fn init(config: &hameau_config::Log) {
    let level = match config.level {
        LogLevel::Error => "error",
        LogLevel::Warn => "warn",
        LogLevel::Info => "info",
        LogLevel::Debug => "debug",
        LogLevel::Trace => "trace",
    };
    let filter = std::env::var("HAMEAU_LOG")
        .ok()
        .and_then(|filter| EnvFilter::try_new(filter).ok())
        .unwrap_or_else(|| EnvFilter::new(level));
    let terminal = std::io::stderr().is_terminal();
    let json = match config.format {
        LogFormat::Auto => !terminal,
        LogFormat::Text => false,
        LogFormat::Json => true,
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if json {
        builder.json().flatten_event(true).with_current_span(false).init();
    } else {
        builder.with_ansi(terminal).init();
    }
}

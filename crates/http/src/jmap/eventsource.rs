//! The EventSource push channel (RFC 8620 §7.3): `GET /jmap/eventsource?types=…&closeafter=
//! state|no&ping=N` answers `text/event-stream`, with a `state` event holding a
//! `StateChange` each time the account's modseq moves (woken by `Mail::subscribe`, after
//! `jmap.push_debounce_ms` so that a burst of commits is one event), and a `ping` event
//! after `ping` seconds without one (moved into `jmap.push_ping_min_s` to
//! `push_ping_max_s`; 0: none, but a comment line every `push_ping_max_s`, so that a client
//! gone without a word is found by the write). `closeafter=state` ends the response after the first
//! `state` event. An account holds at most `jmap.event_sources_per_account_max` streams
//! (past it, 429 with the RFC's `limit` problem); every stream ends when the server stops.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hameau_jmap::RequestError;
use tokio::sync::watch;

use super::{Authenticated, Kind, Slot};
use crate::AppState;
use crate::api::Problem;

/// Type names one stream's `types` may list: far above the four this server has; the
/// rest of a longer list is not read.
const TYPES_NAMED_MAX: usize = 16;

#[derive(Debug, serde::Deserialize)]
pub(super) struct EventSourceQuery {
    #[serde(default)]
    types: Option<String>,
    #[serde(default)]
    closeafter: Option<String>,
    #[serde(default)]
    ping: Option<String>,
}

/// What one stream was asked for, checked.
struct Asked {
    /// `None`: every type (`*`).
    types: Option<Vec<String>>,
    close_after_state: bool,
    /// `None`: no pings.
    ping: Option<Duration>,
}

fn asked(query: EventSourceQuery, limits: &hameau_jmap::Limits) -> Result<Asked, String> {
    let types = match query.types.as_deref().map(str::trim) {
        None | Some("" | "*") => None,
        Some(list) => Some(list.split(',').map(|name| name.trim().to_string()).take(TYPES_NAMED_MAX).collect()),
    };
    let close_after_state = match query.closeafter.as_deref() {
        None | Some("no") => false,
        Some("state") => true,
        Some(other) => return Err(format!("closeafter must be state or no, not {other:?}")),
    };
    let ping = match query.ping.as_deref() {
        None | Some("" | "0") => None,
        Some(seconds) => {
            let seconds: u64 =
                seconds.parse().map_err(|_| format!("ping must be a number of seconds, not {seconds:?}"))?;
            // RFC 8620 §7.3: the server may move the interval into its own bounds.
            Some(Duration::from_secs(seconds.clamp(limits.push_ping_min_s, limits.push_ping_max_s)))
        }
    };
    Ok(Asked { types, close_after_state, ping })
}

/// `GET /jmap/eventsource`.
pub(super) async fn event_source(
    State(state): State<AppState>,
    Authenticated(user): Authenticated,
    Query(query): Query<EventSourceQuery>,
) -> Response {
    let limits = &state.jmap.limits;
    let asked = match asked(query, limits) {
        Ok(asked) => asked,
        Err(why) => return Problem::new(StatusCode::BAD_REQUEST, why).into_response(),
    };
    let max = limits.event_sources_per_account_max;
    let Some(slot) = state.jmap_in_flight.enter(Kind::EventSource, user.account, max) else {
        let error = RequestError::Limit {
            limit: "eventSourcesPerAccount",
            detail: format!("this account has {max} event streams open already"),
        };
        let mut json = error.to_json();
        json["status"] = 429.into();
        let mut response = (StatusCode::TOO_MANY_REQUESTS, axum::Json(json)).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        return response;
    };
    // What the client knows already is what it read before opening the stream: the
    // receiver starts at the modseq stored now, marked seen.
    let changes = match state.jmap.mail.subscribe(user.account).await {
        Ok(changes) => changes,
        Err(e) => {
            tracing::error!(account = user.account, error = %e, "jmap eventsource: cannot watch the account's changes");
            return Problem::new(StatusCode::SERVICE_UNAVAILABLE, "try again later").into_response();
        }
    };
    let stream = Stream {
        account: user.account,
        changes,
        stopping: state.jmap_in_flight.stopping(),
        asked,
        debounce: Duration::from_millis(limits.push_debounce_ms),
        keepalive: Duration::from_secs(limits.push_ping_max_s),
        started: false,
        done: false,
        _slot: slot,
    };
    let body = Body::from_stream(futures_util::stream::unfold(stream, |mut stream| async move {
        let event = stream.next().await?;
        Some((Ok::<Bytes, std::convert::Infallible>(event), stream))
    }));
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache, no-store"));
    // Told to reverse proxies (nginx) not to hold events back.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// One open stream: the events it writes, one at a time.
struct Stream {
    account: u64,
    changes: hameau_mailbox::ModseqWatch,
    stopping: watch::Receiver<bool>,
    asked: Asked,
    debounce: Duration,
    /// The interval of the comments that keep a stream without pings checked.
    keepalive: Duration,
    started: bool,
    done: bool,
    /// Counted in `InFlight` while the stream lives.
    _slot: Slot,
}

impl Stream {
    /// The next event's bytes, or `None` when the stream ends.
    async fn next(&mut self) -> Option<Bytes> {
        if self.done || *self.stopping.borrow() {
            return None;
        }
        if !self.started {
            // A comment first: the response and its headers leave now, and the client
            // knows it is listening.
            self.started = true;
            return Some(Bytes::from_static(b": hameau\n\n"));
        }
        loop {
            // Without pings, a comment every `push_ping_max_s` all the same: a client gone
            // without a word is found by the write, and its stream and slot end.
            let quiet = self.asked.ping.unwrap_or(self.keepalive);
            let ping = tokio::time::sleep(quiet);
            tokio::select! {
                changed = self.changes.changed() => {
                    // The mail model went away: the server is stopping.
                    changed.ok()?;
                    if !self.debounce.is_zero() {
                        tokio::time::sleep(self.debounce).await;
                    }
                    let state = self.changes.mark_seen();
                    let Some(change) = hameau_jmap::mail::state_change(self.account, state, self.asked.types.as_deref())
                    else {
                        continue;
                    };
                    self.done = self.asked.close_after_state;
                    return Some(Bytes::from(format!("event: state\ndata: {change}\n\n")));
                }
                () = ping => {
                    let Some(interval) = self.asked.ping else { return Some(Bytes::from_static(b":\n\n")) };
                    let seconds = interval.as_secs();
                    return Some(Bytes::from(format!("event: ping\ndata: {{\"interval\":{seconds}}}\n\n")));
                }
                () = hameau_net::stopped(&mut self.stopping) => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{EventSourceQuery, asked};

    fn check(
        types: Option<&str>,
        closeafter: Option<&str>,
        ping: Option<&str>,
    ) -> Result<(Option<usize>, bool, Option<u64>), String> {
        let query = EventSourceQuery {
            types: types.map(String::from),
            closeafter: closeafter.map(String::from),
            ping: ping.map(String::from),
        };
        let asked = asked(query, &hameau_jmap::Limits::default())?;
        Ok((
            asked.types.map(|types| types.len()),
            asked.close_after_state,
            asked.ping.map(|ping: Duration| ping.as_secs()),
        ))
    }

    #[test]
    fn a_streams_query_is_read_within_bounds() {
        assert_eq!(check(None, None, None), Ok((None, false, None)));
        assert_eq!(check(Some("*"), Some("state"), Some("0")), Ok((None, true, None)));
        assert_eq!(check(Some("Email,Mailbox"), Some("no"), Some("300")), Ok((Some(2), false, Some(300))));
        // The ping moves into [push_ping_min_s, push_ping_max_s].
        assert_eq!(check(None, None, Some("1")), Ok((None, false, Some(30))));
        assert_eq!(check(None, None, Some("99999")), Ok((None, false, Some(600))));
        // A long list is read up to its bound.
        assert_eq!(check(Some(&vec!["Email"; 1000].join(",")), None, None), Ok((Some(16), false, None)));
        assert!(check(None, Some("later"), None).is_err());
        assert!(check(None, None, Some("-5")).is_err());
        assert!(check(None, None, Some("99999999999999999999999")).is_err());
    }
}

//! The process lifecycle of `warden serve`: the signals it answers
//! ([`Signals`]), the config reload on SIGHUP ([`reload`]), and the log
//! filter that a reload can change ([`log_level`]).
//!
//! SIGHUP never kills the broker: its handler is installed before anything
//! else `serve` does, and a SIGHUP that arrives while the broker is still
//! starting is answered with a reload once it runs. SIGTERM and SIGINT ask
//! for a graceful stop (`server::run`).

pub mod log_level;
pub mod reload;

use std::io;

/// What the operator asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// SIGHUP: read the config file again.
    Reload,
    /// SIGTERM or SIGINT (Ctrl-C): stop gracefully.
    Stop,
}

/// The signal handlers of `warden serve`. Installing them replaces the
/// default dispositions for the rest of the process; a signal that arrives
/// before [`Signals::next`] is called is kept until it is.
#[derive(Debug)]
pub struct Signals {
    #[cfg(unix)]
    hup: tokio::signal::unix::Signal,
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl Signals {
    /// Install the handlers. Needs a tokio runtime.
    #[cfg(unix)]
    pub fn install() -> io::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        // SIGHUP first: until it is handled, one kills the process.
        let hup = signal(SignalKind::hangup())?;
        let term = signal(SignalKind::terminate())?;
        let int = signal(SignalKind::interrupt())?;
        Ok(Signals { hup, term, int })
    }

    #[cfg(not(unix))]
    pub fn install() -> io::Result<Signals> {
        Ok(Signals {})
    }

    /// The next request. Cancel safe.
    #[cfg(unix)]
    pub async fn next(&mut self) -> Event {
        tokio::select! {
            _ = self.hup.recv() => Event::Reload,
            _ = self.term.recv() => Event::Stop,
            _ = self.int.recv() => Event::Stop,
        }
    }

    #[cfg(not(unix))]
    pub async fn next(&mut self) -> Event {
        let _ = tokio::signal::ctrl_c().await;
        Event::Stop
    }
}

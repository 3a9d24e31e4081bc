//! How both daemons live under systemd: signals caught from before READY, STOPPING=1 on the
//! first, exit at once on the second, a deadline on a stop that hangs; and the watchdog
//! interval read as libsystemd reads it.

use std::time::Duration;

/// How long a stop may take before the process exits anyway: a stop that hangs is a bug,
/// but under systemd it would otherwise wait for the stop timeout and a SIGKILL.
pub const STOP_DEADLINE: Duration = Duration::from_secs(10);
/// Exit status after a second signal.
pub const EXIT_SECOND_SIGNAL: i32 = 130;

/// SIGINT (Ctrl-C) and SIGTERM (what systemd sends), caught from the moment this is made:
/// install it before telling systemd READY, so that no early signal meets the default
/// action of killing the process mid-write.
pub struct StopSignals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl StopSignals {
    pub fn install() -> std::io::Result<StopSignals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(StopSignals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    async fn recv(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }

    /// Waits for the first signal; then tells systemd the process is stopping and arms the
    /// second signal (exit at once, flushing nothing) and the [`STOP_DEADLINE`].
    pub async fn stopping(mut self) {
        self.recv().await;
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
        tracing::info!("stopping (signal again to exit at once)");
        tokio::spawn(async move {
            self.recv().await;
            eprintln!("second signal: exiting at once");
            std::process::exit(EXIT_SECOND_SIGNAL);
        });
        std::thread::spawn(|| {
            std::thread::sleep(STOP_DEADLINE);
            eprintln!("error: still stopping after {STOP_DEADLINE:?}; exiting");
            std::process::exit(1);
        });
    }
}

/// The systemd watchdog interval, read as libsystemd's `sd_watchdog_enabled` reads it:
/// `WATCHDOG_USEC`, meant for this process unless `WATCHDOG_PID` names another. (The
/// sd-notify crate also insists on `WATCHDOG_PID` being present, which libsystemd does not.)
pub fn watchdog_interval() -> Option<Duration> {
    let usec = std::env::var("WATCHDOG_USEC").ok()?.parse::<u64>().ok()?;
    let for_us = match std::env::var("WATCHDOG_PID") {
        Ok(pid) => pid.parse::<u32>().ok() == Some(std::process::id()),
        Err(_) => true,
    };
    (usec > 0 && for_us).then_some(Duration::from_micros(usec))
}

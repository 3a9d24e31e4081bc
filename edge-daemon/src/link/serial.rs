//! Serial links: a SiK radio or an autopilot on USB. The device is opened by path, so a
//! `/dev/serial/by-id/…` name keeps working when a replugged adapter comes back as another
//! `ttyUSBn`; when the device vanishes the read fails, and the supervisor reopens the path until
//! it is there again.

use std::os::fd::IntoRawFd as _;
use std::os::unix::io::FromRawFd as _;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use rustix::fs::{FlockOperation, Mode, OFlags};
use rustix::termios::{ControlModes, OptionalActions, SpecialCodeIndex};
use tokio::sync::mpsc;

use super::{stream, Inbound, Link};

pub(super) async fn run(
    link: &Arc<Link>,
    path: &Path,
    baud: u32,
    inbound: &mpsc::Sender<Inbound>,
) -> anyhow::Result<()> {
    let port = open(path, baud).with_context(|| format!("opening {}", path.display()))?;
    tracing::info!(link = link.id, path = %path.display(), baud, "serial port open");
    stream::run(link, port, inbound).await
}

/// Opens the tty raw, 8N1, without flow control, at `baud`, for this process alone.
///
/// serialport's own `open` sets every speed through termios2 (`TCSETS2`), which WSL, some
/// sandboxes and qemu's user-mode emulation refuse. rustix falls back to the classic `TCSETS`
/// when `TCSETS2` is refused, and that carries every standard rate (the ones radios use);
/// only an unusual rate needs termios2, the line pyserial draws too.
fn open(path: &Path, baud: u32) -> anyhow::Result<tokio_serial::SerialStream> {
    let fd = rustix::fs::open(
        path,
        OFlags::RDWR | OFlags::NOCTTY | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive)
        .context("another program has the port open")?;
    let mut termios = rustix::termios::tcgetattr(&fd)?;
    termios.make_raw();
    termios.control_modes |= ControlModes::CREAD | ControlModes::CLOCAL;
    termios.control_modes -= ControlModes::CSTOPB | ControlModes::PARENB | ControlModes::CRTSCTS;
    // With VMIN 0 a read with nothing to read returns 0, which reads as a pulled cable; with
    // 1 it is EWOULDBLOCK on this non-blocking descriptor, and epoll says when to read again.
    termios.special_codes[SpecialCodeIndex::VMIN] = 1;
    termios.special_codes[SpecialCodeIndex::VTIME] = 0;
    termios
        .set_speed(baud)
        .with_context(|| format!("{baud} baud"))?;
    rustix::termios::tcsetattr(&fd, OptionalActions::Now, &termios)
        .with_context(|| format!("setting {baud} baud, 8N1, raw"))?;
    // SAFETY: the descriptor is open and owned by nothing else; `TTYPort` takes it over (and
    // also sets TIOCEXCL, so even root cannot open the port beside us).
    let port = unsafe { serialport::TTYPort::from_raw_fd(fd.into_raw_fd()) };
    Ok(tokio_serial::SerialStream::try_from(port)?)
}

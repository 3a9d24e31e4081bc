//! Serial links: a SiK radio or an autopilot on USB. The device is opened by path, so a
//! `/dev/serial/by-id/…` name keeps working when a replugged adapter comes back as another
//! `ttyUSBn`; when the device vanishes the read fails, and the supervisor reopens the path until
//! it is there again.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::sync::mpsc;
use tokio_serial::SerialPortBuilderExt as _;

use super::{stream, Inbound, Link};

pub(super) async fn run(
    link: &Arc<Link>,
    path: &Path,
    baud: u32,
    inbound: &mpsc::Sender<Inbound>,
) -> anyhow::Result<()> {
    let port = tokio_serial::new(path.to_string_lossy(), baud)
        .open_native_async()
        .with_context(|| format!("opening {}", path.display()))?;
    tracing::info!(link = link.id, path = %path.display(), baud, "serial port open");
    stream::run(link, port, inbound).await
}

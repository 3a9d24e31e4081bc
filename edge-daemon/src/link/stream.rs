//! Byte-stream links (TCP and serial) share one runner: frames may arrive split across reads
//! or several to a read, so the scanner keeps what it has not yet made sense of.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::flow::Pacer;
use super::{count_tx, deliver, take_frames, Inbound, Link};
use crate::frame::FrameScanner;

/// Runs a connected stream until it closes or fails. `Ok` means the peer closed it.
pub(super) async fn run<S>(
    link: &Arc<Link>,
    stream: S,
    inbound: &mpsc::Sender<Inbound>,
) -> anyhow::Result<()>
where
    S: AsyncRead + AsyncWrite + Send,
{
    let (mut reader, mut writer) = tokio::io::split(stream);
    link.set_connected(true);

    let read = async {
        let mut buf = vec![0u8; 16 * 1024];
        let mut scanner = FrameScanner::new();
        loop {
            let n = reader.read(&mut buf).await.context("reading")?;
            if n == 0 {
                return Ok(());
            }
            let received = Instant::now();
            scanner.push(&buf[..n]);
            let frames = take_frames(link, &mut scanner, n);
            if deliver(inbound, link.id, received, frames).await.is_err() {
                return Ok(());
            }
        }
    };

    let write = async {
        let mut batch = Vec::new();
        let mut bytes = Vec::new();
        let mut pacer = Pacer::default();
        loop {
            // Paced to its radio: a tenth of a second's worth at a time, each write waiting
            // for its turn, so what comes next (a command) is chosen as late as possible.
            let rate = link.flow.rate();
            let max_bytes = rate.map(|r| (r / 10) as usize);
            link.out.next_paced(&mut batch, max_bytes).await;
            bytes.clear();
            for frame in batch.drain(..) {
                bytes.extend_from_slice(frame.as_bytes());
                count_tx(link, 1, frame.len());
            }
            if let Some(rate) = rate {
                let wait = pacer.delay(bytes.len(), rate, Instant::now());
                if !wait.is_zero() {
                    link.flow.held();
                    tokio::time::sleep(wait).await;
                }
            }
            writer.write_all(&bytes).await.context("writing")?;
            writer.flush().await.context("flushing")?;
        }
    };

    tokio::select! {
        r = read => r,
        r = write => r,
    }
}

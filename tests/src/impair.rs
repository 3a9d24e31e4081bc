//! A UDP impairment proxy: the stand-in for `tc netem`, which this kernel is built without
//! (`CONFIG_NET_SCH_NETEM is not set`). It sits between a client and a server on loopback and
//! drops a share of datagrams, delays the rest by a fixed time each way, and can take the
//! link down periodically ("flapping"), as a cellular or satellite uplink does.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub struct Impairment {
    /// Share of datagrams dropped, each way.
    pub loss: f64,
    /// One-way delay (the round trip is twice this).
    pub delay: Duration,
    /// `(up, down)`: the link is up for `up`, then drops everything for `down`, repeatedly.
    pub flap: Option<(Duration, Duration)>,
}

pub struct ImpairedLink {
    /// Where clients should send (instead of the server).
    pub addr: SocketAddr,
    pub forwarded: Arc<AtomicU64>,
    pub dropped: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl ImpairedLink {
    pub fn start(server: SocketAddr, impairment: Impairment) -> ImpairedLink {
        let front = UdpSocket::bind("127.0.0.1:0").expect("bind proxy");
        let back = UdpSocket::bind("127.0.0.1:0").expect("bind proxy");
        back.connect(server).expect("connect to server");
        for s in [&front, &back] {
            s.set_read_timeout(Some(Duration::from_millis(50)))
                .expect("timeout");
        }
        let addr = front.local_addr().expect("addr");
        let client: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let forwarded = Arc::new(AtomicU64::new(0));
        let dropped = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let (front, back) = (Arc::new(front), Arc::new(back));

        // Each direction: a receiver that decides a datagram's fate, and a delay line that
        // sends it when due (a fixed delay keeps the order).
        for (dir, seed) in [(Direction::Up, 1u64), (Direction::Down, 2)] {
            let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
            let (front2, back2, client2) = (front.clone(), back.clone(), client.clone());
            let stop2 = stop.clone();
            std::thread::spawn(move || {
                while let Ok((due, data)) = rx.recv() {
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    match dir {
                        Direction::Up => {
                            let _ = back2.send(&data);
                        }
                        Direction::Down => {
                            let to = *client2.lock().unwrap_or_else(|p| p.into_inner());
                            if let Some(to) = to {
                                let _ = front2.send_to(&data, to);
                            }
                        }
                    }
                    if stop2.load(Relaxed) {
                        return;
                    }
                }
            });
            let (front, back, client) = (front.clone(), back.clone(), client.clone());
            let (stop, forwarded, dropped) = (stop.clone(), forwarded.clone(), dropped.clone());
            std::thread::spawn(move || {
                let mut rng = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
                let mut buf = vec![0u8; 65_536];
                while !stop.load(Relaxed) {
                    let n = match dir {
                        Direction::Up => match front.recv_from(&mut buf) {
                            Ok((n, from)) => {
                                *client.lock().unwrap_or_else(|p| p.into_inner()) = Some(from);
                                n
                            }
                            Err(_) => continue,
                        },
                        Direction::Down => match back.recv(&mut buf) {
                            Ok(n) => n,
                            Err(_) => continue,
                        },
                    };
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    let roll = (rng >> 11) as f64 / (1u64 << 53) as f64;
                    let down = impairment.flap.is_some_and(|(up, down)| {
                        let period = (up + down).as_secs_f64();
                        started.elapsed().as_secs_f64() % period >= up.as_secs_f64()
                    });
                    if down || roll < impairment.loss {
                        dropped.fetch_add(1, Relaxed);
                        continue;
                    }
                    forwarded.fetch_add(1, Relaxed);
                    let _ = tx.send((Instant::now() + impairment.delay, buf[..n].to_vec()));
                }
            });
        }
        ImpairedLink {
            addr,
            forwarded,
            dropped,
            stop,
        }
    }
}

impl Drop for ImpairedLink {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
    }
}

#[derive(Clone, Copy)]
enum Direction {
    /// Client → server.
    Up,
    /// Server → client.
    Down,
}

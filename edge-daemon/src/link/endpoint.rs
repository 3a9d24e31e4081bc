//! Endpoint syntax, as field people know it from MAVProxy and pymavlink.
//!
//! | syntax | meaning |
//! |---|---|
//! | `serial:/dev/ttyUSB0:57600` | a serial port (by-id paths work; baud defaults to 57600) |
//! | `udpin:0.0.0.0:14550` (or `udp:`) | listen for UDP; reply to every peer heard |
//! | `udpout:10.0.0.5:14550` | send UDP to one address and hear its replies |
//! | `tcp:127.0.0.1:5760` | connect, reconnecting with backoff |
//! | `tcpin:0.0.0.0:5760` | listen; every client becomes a link of its own |

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

/// Baud rate of a SiK telemetry radio, the common case when none is given.
pub const DEFAULT_BAUD: u32 = 57_600;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Serial {
        path: PathBuf,
        baud: u32,
    },
    UdpIn(SocketAddr),
    /// `host:port`, resolved when the link starts so names like `localhost` work.
    UdpOut(String),
    Tcp(String),
    TcpIn(SocketAddr),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EndpointError {
    #[error(
        "endpoint {0:?}: expected KIND:ADDRESS with KIND one of serial, udpin, udpout, tcp, tcpin"
    )]
    MissingKind(String),
    #[error("endpoint {0:?}: unknown kind {1:?} (serial, udpin, udp, udpout, tcp, tcpin)")]
    UnknownKind(String, String),
    #[error("endpoint {0:?}: {1:?} is not an IP:PORT to listen on (e.g. 0.0.0.0:14550)")]
    BadListenAddress(String, String),
    #[error("endpoint {0:?}: expected HOST:PORT")]
    BadRemoteAddress(String),
    #[error("endpoint {0:?}: bad baud rate {1:?}")]
    BadBaud(String, String),
    #[error("endpoint {0:?}: serial path must be absolute")]
    BadSerialPath(String),
}

impl FromStr for Endpoint {
    type Err = EndpointError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (kind, rest) = s
            .split_once(':')
            .ok_or_else(|| EndpointError::MissingKind(s.to_string()))?;
        let listen = |rest: &str| {
            rest.parse::<SocketAddr>()
                .map_err(|_| EndpointError::BadListenAddress(s.to_string(), rest.to_string()))
        };
        let remote = |rest: &str| match rest.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                Ok(rest.to_string())
            }
            _ => Err(EndpointError::BadRemoteAddress(s.to_string())),
        };
        match kind {
            "serial" => parse_serial(s, rest),
            "udpin" | "udp" => Ok(Endpoint::UdpIn(listen(rest)?)),
            "udpout" => Ok(Endpoint::UdpOut(remote(rest)?)),
            "tcp" => Ok(Endpoint::Tcp(remote(rest)?)),
            "tcpin" => Ok(Endpoint::TcpIn(listen(rest)?)),
            other => Err(EndpointError::UnknownKind(s.to_string(), other.to_string())),
        }
    }
}

fn parse_serial(whole: &str, rest: &str) -> Result<Endpoint, EndpointError> {
    // The baud rate is the part after the last colon, when that part is a number; a path
    // alone takes the SiK default.
    let (path, baud) = match rest.rsplit_once(':') {
        Some((path, baud)) if baud.chars().all(|c| c.is_ascii_digit()) => {
            let baud = baud
                .parse::<u32>()
                .ok()
                .filter(|b| *b > 0)
                .ok_or_else(|| EndpointError::BadBaud(whole.to_string(), baud.to_string()))?;
            (path, baud)
        }
        _ => (rest, DEFAULT_BAUD),
    };
    if !path.starts_with('/') {
        return Err(EndpointError::BadSerialPath(whole.to_string()));
    }
    Ok(Endpoint::Serial {
        path: PathBuf::from(path),
        baud,
    })
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Serial { path, baud } => write!(f, "serial:{}:{baud}", path.display()),
            Endpoint::UdpIn(a) => write!(f, "udpin:{a}"),
            Endpoint::UdpOut(a) => write!(f, "udpout:{a}"),
            Endpoint::Tcp(a) => write!(f, "tcp:{a}"),
            Endpoint::TcpIn(a) => write!(f, "tcpin:{a}"),
        }
    }
}

impl serde::Serialize for Endpoint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Endpoint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_kind_and_prints_it_back() {
        for s in [
            "serial:/dev/ttyUSB0:57600",
            "serial:/dev/serial/by-id/usb-FTDI_FT231X_USB_UART_DN05K1QX-if00-port0:115200",
            "udpin:0.0.0.0:14550",
            "udpout:10.0.0.5:14550",
            "udpout:localhost:14550",
            "tcp:127.0.0.1:5760",
            "tcpin:0.0.0.0:5760",
            "udpin:[::]:14550",
        ] {
            let e: Endpoint = s.parse().unwrap();
            assert_eq!(e.to_string(), s);
        }
    }

    #[test]
    fn aliases_and_defaults() {
        assert_eq!(
            "udp:0.0.0.0:14550".parse(),
            Ok(Endpoint::UdpIn("0.0.0.0:14550".parse().unwrap()))
        );
        assert_eq!(
            "serial:/dev/ttyACM0".parse(),
            Ok(Endpoint::Serial {
                path: "/dev/ttyACM0".into(),
                baud: DEFAULT_BAUD
            })
        );
    }

    #[test]
    fn bad_endpoints_say_what_is_wrong() {
        let err = |s: &str| s.parse::<Endpoint>().unwrap_err().to_string();
        assert!(err("/dev/ttyUSB0").contains("expected KIND:ADDRESS"));
        assert!(err("udpfoo:1.2.3.4:5").contains("unknown kind"));
        assert!(err("udpin:localhost:14550").contains("not an IP:PORT"));
        assert!(err("tcp:127.0.0.1").contains("HOST:PORT"));
        assert!(err("serial:ttyUSB0:57600").contains("absolute"));
        assert!(err("serial:/dev/ttyUSB0:0").contains("bad baud"));
    }
}

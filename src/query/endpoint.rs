//! `--endpoint` values and their resolution, as Thanos and Mimir write
//! them: `HOST:PORT` (used as is), `dns+HOST:PORT` (every A/AAAA address
//! of HOST, on PORT) and `dnssrv+_SERVICE._PROTO.NAME` (every SRV target
//! and port of the name, e.g. a Kubernetes headless Service's named port).
//! The fan-out re-resolves them every `--endpoint.refresh-interval`.
//!
//! SRV records are asked of the first `nameserver` of `/etc/resolv.conf`
//! over UDP (no resolver crate: one question, one answer to parse).
//! Owns no state; must not talk to endpoints.

use std::net::SocketAddr;
use std::time::Duration;

/// DNS questions time out after this long.
const DNS_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest DNS answer read (UDP, with EDNS-less servers 512 is the norm).
const MAX_DNS_MESSAGE: usize = 4096;
/// SRV record type.
const TYPE_SRV: u16 = 33;

/// One `--endpoint` flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointSpec {
    /// `HOST:PORT`, connected to as written.
    Static(String),
    /// `dns+HOST:PORT`: each A/AAAA address of HOST.
    Dns {
        /// The name looked up.
        host: String,
        /// The port used with every address.
        port: u16,
    },
    /// `dnssrv+NAME`: each SRV record's target and port.
    DnsSrv(String),
}

/// Why an `--endpoint` value or its resolution failed.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    /// The value is not one of the accepted forms.
    #[error("--endpoint {value:?}: {reason} (want HOST:PORT, dns+HOST:PORT or dnssrv+_SERVICE._PROTO.NAME)")]
    Syntax {
        /// The flag's value.
        value: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The DNS lookup failed.
    #[error("resolving {name}: {reason}")]
    Resolve {
        /// The name looked up.
        name: String,
        /// Why it failed.
        reason: String,
    },
}

/// Splits `HOST:PORT` (`[V6]:PORT` too), checking the port.
fn host_port(value: &str, s: &str) -> Result<(String, u16), EndpointError> {
    let syntax = |reason| EndpointError::Syntax {
        value: value.to_string(),
        reason,
    };
    let (host, port) = s.rsplit_once(':').ok_or_else(|| syntax("no :PORT"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| syntax("the port is not a number 0-65535"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(syntax("empty host"));
    }
    Ok((host.to_string(), port))
}

impl std::str::FromStr for EndpointSpec {
    type Err = EndpointError;

    fn from_str(value: &str) -> Result<Self, EndpointError> {
        let syntax = |reason| EndpointError::Syntax {
            value: value.to_string(),
            reason,
        };
        if let Some(rest) = value.strip_prefix("dnssrv+") {
            if rest.is_empty() || rest.contains(':') || rest.contains('/') {
                return Err(syntax("a SRV name has no port or path"));
            }
            return Ok(EndpointSpec::DnsSrv(rest.to_string()));
        }
        if let Some(rest) = value.strip_prefix("dns+") {
            let (host, port) = host_port(value, rest)?;
            return Ok(EndpointSpec::Dns { host, port });
        }
        if value.contains("://") || value.contains('/') {
            return Err(syntax("no scheme or path (http is implied)"));
        }
        if let Some((prefix, _)) = value.split_once('+') {
            if !prefix.contains(':') && !prefix.contains('.') {
                return Err(syntax("unknown prefix (only dns+ and dnssrv+)"));
            }
        }
        host_port(value, value)?;
        Ok(EndpointSpec::Static(value.to_string()))
    }
}

impl EndpointSpec {
    /// The `HOST:PORT` addresses this spec names now.
    ///
    /// # Errors
    /// [`EndpointError::Resolve`] when a lookup fails.
    pub async fn resolve(&self) -> Result<Vec<String>, EndpointError> {
        match self {
            EndpointSpec::Static(a) => Ok(vec![a.clone()]),
            EndpointSpec::Dns { host, port } => {
                let err = |reason: String| EndpointError::Resolve {
                    name: host.clone(),
                    reason,
                };
                let found = tokio::time::timeout(
                    DNS_TIMEOUT,
                    tokio::net::lookup_host((host.as_str(), *port)),
                )
                .await
                .map_err(|_| err("timed out".into()))?
                .map_err(|e| err(e.to_string()))?;
                let mut out: Vec<String> = found.map(|a: SocketAddr| a.to_string()).collect();
                out.sort();
                out.dedup();
                Ok(out)
            }
            EndpointSpec::DnsSrv(name) => {
                let fail = |reason: String| EndpointError::Resolve {
                    name: name.clone(),
                    reason,
                };
                let conf = std::fs::read_to_string("/etc/resolv.conf")
                    .map_err(|e| fail(format!("reading /etc/resolv.conf: {e}")))?;
                let conf = ResolvConf::parse(&conf).map_err(fail)?;
                // As the system resolver does for A records: a short name
                // (Kubernetes' `_http._tcp.tidemark-headless`) is tried
                // in each `search` domain, so manifests need not know
                // their namespace.
                let mut last = String::new();
                for candidate in conf.candidates(name) {
                    match lookup_srv(conf.nameserver, &candidate).await {
                        Ok(found) if !found.is_empty() => return Ok(found),
                        Ok(_) => last = format!("{candidate}: no SRV records"),
                        Err(e) => last = format!("{candidate}: {e}"),
                    }
                }
                Err(fail(last))
            }
        }
    }
}

/// What SRV lookups need of `/etc/resolv.conf`.
#[derive(Debug, PartialEq)]
struct ResolvConf {
    /// The first `nameserver`, on port 53.
    nameserver: SocketAddr,
    /// The `search` domains, in order.
    search: Vec<String>,
    /// `options ndots:N` (1 when absent, as glibc).
    ndots: usize,
}

impl ResolvConf {
    fn parse(text: &str) -> Result<ResolvConf, String> {
        let mut nameserver = None;
        let mut search = Vec::new();
        let mut ndots = 1;
        for line in text.lines() {
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") if nameserver.is_none() => {
                    nameserver = words
                        .next()
                        .and_then(|ip| ip.parse::<std::net::IpAddr>().ok())
                        .map(|ip| SocketAddr::new(ip, 53));
                }
                // The last `search` (or `domain`) line wins, as glibc.
                Some("search" | "domain") => {
                    search = words.take(6).map(str::to_string).collect();
                }
                Some("options") => {
                    for o in words {
                        if let Some(n) = o.strip_prefix("ndots:").and_then(|n| n.parse().ok()) {
                            ndots = usize::min(n, 15);
                        }
                    }
                }
                _ => {}
            }
        }
        let nameserver = nameserver.ok_or("no nameserver in /etc/resolv.conf")?;
        Ok(ResolvConf {
            nameserver,
            search,
            ndots,
        })
    }

    /// The names to ask for `name`, in order: as given first when it has
    /// at least `ndots` dots (or ends with one), else after the search
    /// domains.
    fn candidates(&self, name: &str) -> Vec<String> {
        if name.ends_with('.') {
            return vec![name.to_string()];
        }
        let searched = self.search.iter().map(|d| format!("{name}.{d}"));
        if name.matches('.').count() >= self.ndots {
            std::iter::once(name.to_string()).chain(searched).collect()
        } else {
            searched.chain(std::iter::once(name.to_string())).collect()
        }
    }
}

/// Asks `server` for the SRV records of `name`; answers `target:port`
/// (targets are connected to by name), sorted.
pub(crate) async fn lookup_srv(server: SocketAddr, name: &str) -> Result<Vec<String>, String> {
    let bind: SocketAddr = if server.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = tokio::net::UdpSocket::bind(bind)
        .await
        .map_err(|e| format!("binding a UDP socket: {e}"))?;
    let id = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos())
        & 0xffff) as u16;
    let query = srv_query(id, name)?;
    sock.send_to(&query, server)
        .await
        .map_err(|e| format!("sending to {server}: {e}"))?;
    let mut buf = vec![0u8; MAX_DNS_MESSAGE];
    let n = tokio::time::timeout(DNS_TIMEOUT, async {
        loop {
            let (n, from) = sock.recv_from(&mut buf).await?;
            if from == server && n >= 2 && buf[..2] == id.to_be_bytes() {
                return Ok::<usize, std::io::Error>(n);
            }
        }
    })
    .await
    .map_err(|_| format!("no answer from {server} within {DNS_TIMEOUT:?}"))?
    .map_err(|e| format!("reading from {server}: {e}"))?;
    parse_srv_answer(&buf[..n])
}

/// A DNS question for the SRV records of `name`, recursion desired.
fn srv_query(id: u16, name: &str) -> Result<Vec<u8>, String> {
    let mut q = Vec::with_capacity(name.len() + 18);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(format!("{name:?} is not a DNS name"));
        }
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&TYPE_SRV.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes());
    Ok(q)
}

/// Reads a (possibly compressed) name at `pos`; returns it and the
/// position after it in the record (not after a pointer's target).
fn read_name(msg: &[u8], mut pos: usize) -> Result<(String, usize), String> {
    let bad = || "malformed DNS name".to_string();
    let mut labels: Vec<String> = Vec::new();
    let mut end = None;
    // Pointers can loop: bound the hops.
    for _ in 0..128 {
        let len = *msg.get(pos).ok_or_else(bad)? as usize;
        if len == 0 {
            return Ok((labels.join("."), end.unwrap_or(pos + 1)));
        }
        if len & 0xc0 == 0xc0 {
            let lo = *msg.get(pos + 1).ok_or_else(bad)? as usize;
            end.get_or_insert(pos + 2);
            pos = ((len & 0x3f) << 8) | lo;
            continue;
        }
        let label = msg.get(pos + 1..pos + 1 + len).ok_or_else(bad)?;
        labels.push(String::from_utf8_lossy(label).into_owned());
        pos += 1 + len;
    }
    Err(bad())
}

fn u16_at(msg: &[u8], pos: usize) -> Result<u16, String> {
    msg.get(pos..pos + 2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]))
        .ok_or_else(|| "truncated DNS message".to_string())
}

/// The `target:port` of every SRV answer record, sorted.
fn parse_srv_answer(msg: &[u8]) -> Result<Vec<String>, String> {
    let flags = u16_at(msg, 2)?;
    match flags & 0x000f {
        0 => {}
        3 => return Err("no such name (NXDOMAIN)".into()),
        rcode => return Err(format!("DNS error code {rcode}")),
    }
    if flags & 0x0200 != 0 {
        return Err("answer truncated (TC); too many records for UDP".into());
    }
    let (qd, an) = (u16_at(msg, 4)?, u16_at(msg, 6)?);
    let mut pos = 12;
    for _ in 0..qd {
        pos = read_name(msg, pos)?.1 + 4;
    }
    let mut out = Vec::new();
    for _ in 0..an {
        let (_, p) = read_name(msg, pos)?;
        let (rtype, rdlen) = (u16_at(msg, p)?, u16_at(msg, p + 8)? as usize);
        let rdata = p + 10;
        if rtype == TYPE_SRV {
            let port = u16_at(msg, rdata + 4)?;
            let (target, _) = read_name(msg, rdata + 6)?;
            out.push(format!("{target}:{port}"));
        }
        pos = rdata + rdlen;
    }
    out.sort();
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn srv_names_are_tried_in_the_search_domains_as_the_system_resolver_does() {
        let k8s = "search monitoring.svc.cluster.local svc.cluster.local cluster.local\n\
                   nameserver 10.96.0.10\noptions ndots:5\n";
        let c = ResolvConf::parse(k8s).unwrap();
        assert_eq!(c.nameserver, "10.96.0.10:53".parse().unwrap());
        assert_eq!(c.ndots, 5);
        assert_eq!(
            c.candidates("_http._tcp.tidemark-headless"),
            [
                "_http._tcp.tidemark-headless.monitoring.svc.cluster.local",
                "_http._tcp.tidemark-headless.svc.cluster.local",
                "_http._tcp.tidemark-headless.cluster.local",
                "_http._tcp.tidemark-headless",
            ]
        );
        assert_eq!(
            c.candidates("_http._tcp.tidemark-headless.monitoring.svc.cluster.local."),
            ["_http._tcp.tidemark-headless.monitoring.svc.cluster.local."]
        );
        let plain = ResolvConf::parse("nameserver ::1\nsearch example.org\n").unwrap();
        assert_eq!(plain.ndots, 1);
        assert_eq!(
            plain.candidates("_x._tcp.a.b"),
            ["_x._tcp.a.b", "_x._tcp.a.b.example.org"]
        );
        assert!(ResolvConf::parse("search a\n").is_err());
    }

    #[test]
    fn endpoint_spec_parses_thanos_forms_and_refuses_others() {
        let p = |s: &str| s.parse::<EndpointSpec>();
        assert_eq!(
            p("node-a:9201").unwrap(),
            EndpointSpec::Static("node-a:9201".into())
        );
        assert_eq!(
            p("[::1]:9201").unwrap(),
            EndpointSpec::Static("[::1]:9201".into())
        );
        assert_eq!(
            p("dns+tidemark.ns.svc:9201").unwrap(),
            EndpointSpec::Dns {
                host: "tidemark.ns.svc".into(),
                port: 9201
            }
        );
        assert_eq!(
            p("dnssrv+_http._tcp.tidemark.ns.svc.cluster.local").unwrap(),
            EndpointSpec::DnsSrv("_http._tcp.tidemark.ns.svc.cluster.local".into())
        );
        for bad in [
            "node-a",
            "node-a:",
            "node-a:99999",
            ":9201",
            "http://node-a:9201",
            "dns+node-a",
            "dnssrv+",
            "dnssrv+_x._tcp.n:80",
            "dnssrvnoa+_x._tcp.n",
        ] {
            assert!(p(bad).is_err(), "{bad} accepted");
        }
    }

    #[tokio::test]
    async fn dns_endpoint_resolves_localhost() {
        let spec: EndpointSpec = "dns+localhost:9201".parse().unwrap();
        let got = spec.resolve().await.unwrap();
        assert!(
            got.iter()
                .any(|a| a == "127.0.0.1:9201" || a == "[::1]:9201"),
            "{got:?}"
        );
    }

    /// A DNS server on 127.0.0.1 that answers one SRV question with two
    /// records (the second target compressed against the first).
    #[tokio::test]
    async fn srv_lookup_reads_targets_and_ports_from_a_real_udp_answer() {
        let server = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = server.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut buf = [0u8; 512];
            let (n, from) = server.recv_from(&mut buf).await.unwrap();
            let q = &buf[..n];
            let mut a = Vec::new();
            a.extend_from_slice(&q[..2]);
            a.extend_from_slice(&[0x81, 0x80, 0, 1, 0, 2, 0, 0, 0, 0]);
            a.extend_from_slice(&q[12..]);
            // Answer 1: name = pointer to the question, SRV, target a.svc.
            let target1_at = a.len() + 12 + 6;
            a.extend_from_slice(&[0xc0, 12, 0, 33, 0, 1, 0, 0, 0, 30]);
            let rdata1 = [&[0u8, 1, 0, 1, 0x23, 0x51][..], b"\x01a\x03svc\x00"].concat();
            a.extend_from_slice(&(rdata1.len() as u16).to_be_bytes());
            a.extend_from_slice(&rdata1);
            // Answer 2: target b + pointer to "svc" of the first target.
            a.extend_from_slice(&[0xc0, 12, 0, 33, 0, 1, 0, 0, 0, 30]);
            let svc_at = (target1_at + 2) as u8;
            let rdata2 = [&[0u8, 1, 0, 1, 0x23, 0x52][..], b"\x01b", &[0xc0, svc_at]].concat();
            a.extend_from_slice(&(rdata2.len() as u16).to_be_bytes());
            a.extend_from_slice(&rdata2);
            server.send_to(&a, from).await.unwrap();
        });
        let got = lookup_srv(addr, "_http._tcp.tidemark.test").await.unwrap();
        task.await.unwrap();
        assert_eq!(
            got,
            vec!["a.svc:9041".to_string(), "b.svc:9042".to_string()]
        );
    }

    #[test]
    fn srv_answer_parsing_never_panics_on_garbage() {
        for len in 0..64 {
            let msg: Vec<u8> = (0..len).map(|i| (i * 37 % 256) as u8).collect();
            let _ = parse_srv_answer(&msg);
        }
        // A pointer loop ends in an error.
        let mut msg = vec![0u8; 12];
        msg[5] = 1;
        msg.extend_from_slice(&[0xc0, 12]);
        assert!(parse_srv_answer(&msg).is_err());
    }
}

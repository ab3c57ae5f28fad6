//! The raw TLS baseline of `caucus bench blob`: one tokio-rustls connection on loopback (TLS 1.3,
//! aws-lc-rs, a throwaway self-signed certificate) carrying `bytes` in 64 KiB writes, sender and
//! receiver in two threads of this process, timed until the receiver has read the last byte.
//! Also the peak-RSS and CPU-time probes used for every process of the benchmark.

use std::sync::Arc;
use std::time::Instant;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Throughput in MB/s (10^6 bytes per second) of `bytes` over one loopback TLS connection.
pub fn raw_tls_mb_per_s(bytes: u64) -> anyhow::Result<f64> {
    Ok(raw_tls(bytes)?.mb_per_s)
}

/// What one raw TLS run measured.
#[derive(Clone, Copy, Debug)]
pub struct RawTls {
    /// Throughput, MB/s (10^6 bytes per second).
    pub mb_per_s: f64,
    /// CPU seconds (user + system) this process used over the run, both ends together.
    pub cpu_s: Option<f64>,
}

/// [`raw_tls_mb_per_s`], with the CPU time both ends used.
pub fn raw_tls(bytes: u64) -> anyhow::Result<RawTls> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let before = cpu_seconds(None);
    let mb_per_s = rt.block_on(run(bytes))?;
    let cpu_s = cpu_since(None, before);
    Ok(RawTls { mb_per_s, cpu_s })
}

async fn run(bytes: u64) -> anyhow::Result<f64> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])?;
    let cert = CertificateDer::from(ck.cert.der().to_vec());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)?;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert)?;
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let recv = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await?;
        tcp.set_nodelay(true)?;
        let mut tls = acceptor.accept(tcp).await?;
        let mut buf = vec![0u8; 1 << 16];
        let mut got = 0u64;
        while got < bytes {
            let n = tls.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            got += n as u64;
        }
        Ok::<_, std::io::Error>((got, Instant::now()))
    });
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let mut tls = connector
        .connect(ServerName::try_from("localhost")?, tcp)
        .await?;
    let block = vec![0x5au8; 1 << 16];
    let start = Instant::now();
    let mut sent = 0u64;
    while sent < bytes {
        let n = (bytes - sent).min(block.len() as u64) as usize;
        tls.write_all(&block[..n]).await?;
        sent += n as u64;
    }
    tls.flush().await?;
    let (got, end) = recv.await??;
    anyhow::ensure!(got == bytes, "raw tls receiver got {got} of {bytes} bytes");
    tls.shutdown().await.ok();
    Ok(bytes as f64 / 1e6 / end.duration_since(start).as_secs_f64())
}

/// Peak resident set size (`VmHWM`) of process `pid` (or `self`), in KiB.
pub fn peak_rss_kib(pid: Option<u32>) -> Option<u64> {
    let p = match pid {
        Some(p) => format!("/proc/{p}/status"),
        None => "/proc/self/status".to_string(),
    };
    let s = std::fs::read_to_string(p).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU seconds (user + system, every thread, living or ended) used so far by process `pid`
/// (or `self`), from `/proc/<pid>/stat`; clock-tick resolution (10 ms).
pub fn cpu_seconds(pid: Option<u32>) -> Option<f64> {
    let p = match pid {
        Some(p) => format!("/proc/{p}/stat"),
        None => "/proc/self/stat".to_string(),
    };
    let s = std::fs::read_to_string(p).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count from its end.
    let rest = &s[s.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 (utime) and 15 (stime), numbered from 1 over the whole line; `rest` starts at 3.
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // In USER_HZ ticks, which Linux fixes at 100 for user space on every architecture we build.
    Some(ticks as f64 / 100.0)
}

/// CPU seconds process `pid` (or `self`) used since an earlier [`cpu_seconds`] reading.
pub fn cpu_since(pid: Option<u32>, before: Option<f64>) -> Option<f64> {
    Some(cpu_seconds(pid)? - before?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_tls_moves_the_bytes_and_rss_is_read() {
        let r = raw_tls(64 << 20).expect("raw tls");
        assert!(r.mb_per_s > 0.0);
        // Encrypting and decrypting 64 MiB takes some CPU, and less than the wall time allows.
        let cpu = r.cpu_s.expect("cpu time");
        let wall = 64.0 * 1.048576 / r.mb_per_s;
        assert!(
            cpu > 0.0 && cpu <= 3.0 * wall + 0.05,
            "cpu {cpu} s, wall {wall} s"
        );
        assert!(peak_rss_kib(None).is_some_and(|k| k > 0));
        assert!(peak_rss_kib(Some(u32::MAX)).is_none());
        assert!(cpu_seconds(Some(u32::MAX)).is_none());
        assert!(cpu_seconds(Some(std::process::id())).is_some());
        assert!(cpu_since(None, None).is_none());
        assert!(cpu_since(None, cpu_seconds(None)).is_some_and(|d| d >= 0.0));
    }
}

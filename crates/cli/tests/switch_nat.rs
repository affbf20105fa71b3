//! `umlkit switch --nat` (issue 13.4): a rootless NAT port (libslirp) on
//! the switch. Real guests get 10.0.2.15 by DHCP, reach a server on the
//! host's 127.0.0.1 through 10.0.2.2 (TCP and UDP), host clients reach a
//! guest's server through `--forward`, bad forwards fail before anything
//! runs. No test reaches any address outside this host.
#![allow(clippy::disallowed_macros)] // eprintln! in tests: the harness captures stderr

mod guest_common;
mod switch_common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::process::{Command, Stdio};
use std::time::Duration;

use switch_common::*;

const LEASE_WAIT: Duration = Duration::from_secs(30);

/// An HTTP server on the host's 127.0.0.1 answering `body` to every
/// request, in a thread that lives as long as the test process.
fn host_http(body: &'static str) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let mut req = Vec::new();
            let mut b = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut b) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&b[..n]),
                }
            }
            let _ = write!(
                s,
                "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

/// A port nothing listens on right now (bound then released).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Boot `name` on `net` with `eth0` configured by DHCP and wait for its lease.
fn boot_dhcp(env: &guest_common::Env, name: &str, net: &str) -> String {
    let img = env.default_image();
    env.start(
        name,
        &[
            "--disk",
            img.to_str().unwrap(),
            "--net",
            net,
            "--",
            "umlkit.ip.eth0=dhcp",
        ],
    );
    let mut addr = String::new();
    let leased = testkit::wait_until(LEASE_WAIT, || {
        addr = env.ok(&["exec", name, "--", "ip", "-4", "-o", "addr", "show", "eth0"]);
        addr.contains("inet 10.0.2.15/24")
    });
    assert!(leased, "{name} got no lease: {addr}");
    addr
}

/// The issue's proof, first half: a guest (vector transport) behind
/// `--nat` gets 10.0.2.15, a default route via 10.0.2.2 and DNS 10.0.2.3 by
/// DHCP, fetches a page from an HTTP server on the host's 127.0.0.1 and
/// sends UDP to the host; the switch says what the NAT port serves.
#[test]
fn nat_guest_gets_a_dhcp_lease_and_reaches_the_hosts_loopback() {
    let port = host_http("hello from the host loopback\n");
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let uport = udp.local_addr().unwrap().port();
    let env = guest_common::Env::new("nat1");
    let sw = Sw::start(&["--nat", "--vector"]);
    let net = format!("{},vector", sw.dir.display());
    boot_dhcp(&env, "n1", &net);
    let route = env.ok(&["exec", "n1", "--", "ip", "route"]);
    assert!(route.contains("default via 10.0.2.2 dev eth0"), "{route}");
    let resolv = env.ok(&["exec", "n1", "--", "cat", "/etc/resolv.conf"]);
    assert!(resolv.contains("nameserver 10.0.2.3"), "{resolv}");
    let page = env.ok(&[
        "exec",
        "n1",
        "--",
        "timeout",
        "20",
        "wget",
        "-q",
        "-O",
        "-",
        &format!("http://10.0.2.2:{port}/"),
    ]);
    assert_eq!(page, "hello from the host loopback\n");
    // outbound UDP: resent until the host socket hears it (UDP may be lost)
    let mut got = String::new();
    let heard = testkit::wait_until(LEASE_WAIT, || {
        env.ok(&[
            "exec",
            "n1",
            "--",
            "bash",
            "-c",
            &format!("echo udp-from-guest > /dev/udp/10.0.2.2/{uport}"),
        ]);
        let mut b = [0u8; 256];
        match udp.recv_from(&mut b) {
            Ok((n, from)) => {
                got = format!("{} from {from}", String::from_utf8_lossy(&b[..n]));
                true
            }
            Err(_) => false,
        }
    });
    assert!(heard && got.starts_with("udp-from-guest\n"), "{got}");
    // the switch's status: the NAT port in port/print and in its log
    let ports = sw.mgmt("port/print");
    assert!(
        ports.contains("umlkit nat 10.0.2.0/24 gw 10.0.2.2"),
        "{ports}"
    );
    assert!(sw.log().contains("nat: port up"), "{}", sw.log());
}

/// The issue's proof, second half: a host client reaches a guest's server
/// (busybox httpd; daemon transport) through `--forward
/// tcp:HOSTPORT:10.0.2.15:GUESTPORT` and reads the expected bytes.
#[test]
fn nat_forward_brings_a_host_client_to_a_guest_server() {
    let hport = free_port();
    let fwd = format!("tcp:{hport}:10.0.2.15:8000");
    let env = guest_common::Env::new("nat2");
    let sw = Sw::start(&["--nat", "--forward", &fwd]);
    // the switch names the NAT port and its forwards
    let mut ports = String::new();
    assert!(
        testkit::wait_until(WAIT, || {
            ports = sw.mgmt("port/print");
            ports.contains("umlkit nat 10.0.2.0/24 gw 10.0.2.2")
        }),
        "{ports}"
    );
    let want = format!("umlkit switch: NAT: net 10.0.2.0/24, gateway 10.0.2.2, DNS 10.0.2.3, DHCP from 10.0.2.15, host loopback at 10.0.2.2, forwards tcp:127.0.0.1:{hport}:10.0.2.15:8000");
    assert!(sw.log().contains(&want), "{}", sw.log());
    boot_dhcp(&env, "n2", &sw.dir.display().to_string());
    env.ok(&[
        "exec",
        "n2",
        "--",
        "sh",
        "-c",
        "mkdir -p /tmp/www && echo 'served by the guest' > /tmp/www/index.html && httpd -p 8000 -h /tmp/www",
    ]);
    let mut reply = String::new();
    let ok = testkit::wait_until(LEASE_WAIT, || {
        reply.clear();
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", hport)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = s.write_all(b"GET /index.html HTTP/1.0\r\nHost: g\r\n\r\n");
        let _ = s.read_to_string(&mut reply);
        reply.contains("served by the guest")
    });
    assert!(ok, "no page through the forward: {reply:?}");
    assert!(
        reply.starts_with("HTTP/1.") && reply.contains(" 200 "),
        "{reply}"
    );
}

/// `--nat-no-host-loopback`: the guest (vde transport) still gets a lease,
/// but 10.0.2.2 no longer leads to the host's 127.0.0.1.
#[test]
fn nat_no_host_loopback_keeps_guests_off_the_hosts_loopback() {
    let port = host_http("must not be served\n");
    let env = guest_common::Env::new("nat3");
    let sw = Sw::start(&["--nat", "--nat-no-host-loopback"]);
    boot_dhcp(&env, "n3", &format!("{},vde", sw.dir.display()));
    let o = env.umlkit(&[
        "exec",
        "n3",
        "--",
        "timeout",
        "10",
        "wget",
        "-q",
        "-O",
        "-",
        &format!("http://10.0.2.2:{port}/"),
    ]);
    assert!(
        !o.status.success() && !String::from_utf8_lossy(&o.stdout).contains("must not"),
        "reached the host loopback: {o:?}"
    );
    assert!(sw.log().contains("host loopback refused"), "{}", sw.log());
}

/// Bad `--forward` specs, a busy host port and a NAT without a switch
/// directory: exit status 1 (2 for clap's own errors), a message naming
/// the spec, and no switch directory left behind.
#[test]
fn nat_bad_forwards_fail_cleanly_before_the_switch_starts() {
    let tmp = testkit::short_tempdir("natbad");
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_port = busy.local_addr().unwrap().port();
    let dir = tmp.path().join("sw");
    let d = dir.display().to_string();
    let run = switch_status;
    let busy_spec = format!("tcp:{busy_port}:10.0.2.15:80");
    let busy_udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let busy_udp_spec = format!("udp:{}:10.0.2.15:53", busy_udp.local_addr().unwrap().port());
    let uml_ctl = format!("{d}.ctl");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["-s", &d, "--nat", "--forward", "sctp:8080:10.0.2.15:80"],
            "--forward 'sctp:8080:10.0.2.15:80': the protocol must be tcp or udp",
        ),
        (
            vec!["-s", &d, "--nat", "--forward", "tcp:8080"],
            "expected PROTO:[HOSTIP:]HOSTPORT:GUESTIP:GUESTPORT",
        ),
        (
            vec!["-s", &d, "--nat", "--forward", "tcp:99999:10.0.2.15:80"],
            "'99999' is not a port number",
        ),
        (
            vec!["-s", &d, "--nat", "--forward", "tcp:8080:192.168.1.5:80"],
            "the guest address 192.168.1.5 is not a guest's address on the NAT network 10.0.2.0/24",
        ),
        (
            vec![
                "-s",
                &d,
                "--nat",
                "--forward",
                "tcp:8080:10.0.2.15:80",
                "--forward",
                "tcp:8080:10.0.2.16:22",
            ],
            "host port 8080 is already forwarded",
        ),
        (
            vec!["-s", &d, "--nat", "--forward", &busy_spec],
            "Address already in use",
        ),
        (
            vec!["-s", &d, "--nat", "--forward", &busy_udp_spec],
            "Address already in use",
        ),
        (
            vec!["-u", &uml_ctl, "--nat"],
            "--nat needs a switch directory",
        ),
    ];
    for (args, want) in &cases {
        let (code, err) = run(args);
        assert_eq!(code, Some(1), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(!dir.exists(), "{args:?} left {d}");
    }
    let (_, err) = run(&["-s", &d, "--nat", "--forward", &busy_spec]);
    assert!(
        err.contains(&format!("tcp 127.0.0.1:{busy_port}")),
        "the busy port is named: {err}"
    );
    // --forward without --nat is a usage error
    let (code, err) = run(&["-s", &d, "--forward", "tcp:8080:10.0.2.15:80"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--nat"), "{err}");
    assert!(!dir.exists());
}

/// Kathará's `M[bridged]=true` in a lab: the machine gets eth1 (after its
/// eth0) on the lab's NAT switch, leased by DHCP at boot, and reaches a
/// server on the host's 127.0.0.1; a second bridged machine gets the next
/// lease on the same NAT; `lab stop` takes the NAT switch down.
#[test]
fn lab_bridged_machine_reaches_the_hosts_loopback_only_with_host_access() {
    let port = host_http("hello, bridged lab machine\n");
    let lab = testkit::lab::TestLab::new(
        "labnat",
        &[
            (
                "lab.conf",
                "a[0]=lan\na[bridged]=true\nb[0]=lan\nc[bridged]=true\n",
            ),
            ("a.startup", "ip addr add 10.9.1.1/24 dev eth0\n"),
            ("b.startup", "ip addr add 10.9.1.2/24 dev eth0\n"),
        ],
    );
    lab.ok_dir("start", &[]);
    // a (eth1, after its eth0) and c (eth0: no other interface) share the
    // lab's NAT: two leases from 10.0.2.15, in boot order
    let lease = |m: &str, dev: &str| {
        let mut addr = String::new();
        let got = testkit::wait_until(LEASE_WAIT, || {
            addr = lab.exec_ok(m, &format!("ip -4 -o addr show {dev}"));
            addr.contains("inet 10.0.2.15/24") || addr.contains("inet 10.0.2.16/24")
        });
        assert!(got, "{m} has no lease on {dev}: {addr}");
        if addr.contains("10.0.2.15/") {
            "10.0.2.15"
        } else {
            "10.0.2.16"
        }
    };
    let (a_ip, c_ip) = (lease("a", "eth1"), lease("c", "eth0"));
    assert_ne!(a_ip, c_ip);
    lab.exec_ok("c", &format!("ping -c 1 -W 5 {a_ip}"));
    // an untrusted lab (no --host-access) does not reach the host's loopback
    let (code, out) = lab.exec_text(
        "a",
        &format!("timeout 20 wget -q -O - http://10.0.2.2:{port}/"),
    );
    assert!(code != Some(0) && !out.contains("hello"), "{code:?}: {out}");
    lab.ok_dir("stop", &[]);
    lab.ok_dir("start", &["--host-access"]);
    lease("a", "eth1");
    let page = lab.exec_ok(
        "a",
        &format!("timeout 20 wget -q -O - http://10.0.2.2:{port}/"),
    );
    assert_eq!(page, "hello, bridged lab machine\n");
    // the lab's own domain still works beside it; b has no NAT interface
    lab.exec_ok("a", "ping -c 1 -W 5 10.9.1.2");
    let links = lab.exec_ok("b", "ip -o link");
    assert!(!links.contains("eth1"), "{links}");
    let info = lab.ok_dir("info", &["--json"]);
    assert!(
        info.contains("\"nat\": true") || info.contains("\"nat\":true"),
        "{info}"
    );
    lab.ok_dir("stop", &[]);
    assert!(lab.leftovers().is_empty(), "{:?}", lab.leftovers());
}

/// A DNS responder (python3, stdlib): every A question gets 10.1.2.3.
const DNS_PY: &str = r#"
import socket, struct
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 53))
open("ready", "w").close()
while True:
    q, peer = s.recvfrom(512)
    if len(q) < 12:
        continue
    i = 12
    while i < len(q) and q[i]:
        i += q[i] + 1
    question = q[12:i + 5]
    qtype = struct.unpack("!H", q[i + 1:i + 3])[0] if i + 3 <= len(q) else 0
    answers = b""
    n = 0
    if qtype == 1:
        answers = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + bytes([10, 1, 2, 3])
        n = 1
    s.sendto(q[:2] + b"\x81\x80" + struct.pack("!HHHH", 1, n, 0, 0) + question + answers, peer)
"#;

/// DNS through the NAT without reaching any outside address: the switch
/// runs in a mount and network namespace the test makes (`unshare -mn`)
/// with its own /etc/resolv.conf naming 127.0.0.1, where a test DNS
/// responder answers; the guest (outside, joined over the switch's vector
/// socket) resolves a name through 10.0.2.3 from its DHCP lease.
#[test]
fn nat_forwards_the_guests_dns_to_the_hosts_resolver() {
    if umlkit_sys::net::euid() != 0 {
        eprintln!("skipped: needs root for unshare -mn");
        return;
    }
    testkit::require("unshare", "util-linux");
    testkit::require("/usr/bin/python3", "python3");
    let tmp = testkit::short_tempdir("natdns");
    let t = tmp.path();
    std::fs::write(t.join("resolv.conf"), "nameserver 127.0.0.1\n").unwrap();
    std::fs::write(t.join("dns.py"), DNS_PY).unwrap();
    let script = format!(
        "set -e; ip link set lo up; mount --bind {t}/resolv.conf /etc/resolv.conf; \
         /usr/bin/python3 {t}/dns.py & \
         exec {umlkit} switch -s {t}/sw -M {t}/mgmt --nat --vector",
        t = t.display(),
        umlkit = testkit::umlkit_bin().display()
    );
    let mut c = Command::new("unshare");
    c.args(["--mount", "--net", "sh", "-c", &script])
        .current_dir(t)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(t.join("switch.log")).unwrap());
    let _sw = testkit::ProcGuard::spawn("unshare-switch", c);
    let log = || std::fs::read_to_string(t.join("switch.log")).unwrap_or_default();
    assert!(
        testkit::wait_until(WAIT, || t.join("ready").exists()
            && log().contains("nat: port up")),
        "switch or DNS responder did not start: {}",
        log()
    );
    let env = guest_common::Env::new("nat4");
    // vector: a path socket (the daemon transport's abstract client
    // address would not cross into the switch's network namespace)
    boot_dhcp(&env, "n4", &format!("{},vector", t.join("sw").display()));
    let out = env.ok(&["exec", "n4", "--", "nslookup", "nat-test.example"]);
    assert!(out.contains("10.1.2.3"), "{out}");
}

/// An ARP request from 10.0.2.15 (MAC `me`) for the gateway 10.0.2.2.
fn arp_for_gateway(me: [u8; 6]) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&me);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&me);
    f.extend_from_slice(&[10, 0, 2, 15]);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&[10, 0, 2, 2]);
    f.resize(60, 0);
    f
}

/// Whether `c` gets the NAT's ARP reply for 10.0.2.2 (asking again until WAIT).
fn gateway_answers(c: &Client, me: [u8; 6]) -> bool {
    testkit::wait_until(WAIT, || {
        c.send(&arp_for_gateway(me));
        let deadline = std::time::Instant::now() + Duration::from_millis(300);
        let mut buf = [0u8; 2048];
        c.data
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        while std::time::Instant::now() < deadline {
            if let Ok(n) = c.data.recv(&mut buf) {
                let f = &buf[..n];
                if n >= 42
                    && f[12..14] == [8, 6]
                    && f[20..22] == [0, 2]
                    && f[28..32] == [10, 0, 2, 2]
                {
                    return true;
                }
            }
        }
        false
    })
}

/// The NAT port sits on the switch's last port (lab machines ask for ports
/// from 1), and when the switch ends it (`port/epclose`) it joins again:
/// the gateway answers ARP before and after.
#[test]
fn nat_port_is_the_last_one_and_joins_again_when_closed() {
    let sw = Sw::start(&["--nat", "-n", "8"]);
    let mut ports = String::new();
    assert!(
        testkit::wait_until(WAIT, || {
            ports = sw.mgmt("port/print");
            ports.contains("Port 0007") && ports.contains("umlkit nat 10.0.2.0/24")
        }),
        "{ports}"
    );
    let me = mac(0x15);
    let c = Client::vde(&sw.dir, 1).unwrap();
    assert!(gateway_answers(&c, me), "no ARP reply from the NAT");
    // the switch closes the NAT's endpoint (its control stream)
    let id: u32 = ports
        .lines()
        .find(|l| l.contains("umlkit nat"))
        .and_then(|l| l.split("endpoint ID ").nth(1))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no NAT endpoint in {ports}"));
    let r = sw.mgmt(&format!("port/epclose 7 {id}"));
    assert!(r.contains("1000 Success"), "{r}");
    assert!(
        testkit::wait_until(Duration::from_secs(20), || sw
            .log()
            .contains("nat: port closed (the switch ended the port;")
            && sw.mgmt("port/print").contains("umlkit nat 10.0.2.0/24")),
        "{}\n{}",
        sw.log(),
        sw.mgmt("port/print")
    );
    assert!(
        gateway_answers(&c, me),
        "no ARP reply after the NAT joined again"
    );
}

//! The series one node_exporter (1.5, Debian's `prometheus-node-exporter`)
//! target exposes, with the series Prometheus adds per target (`up`,
//! `scrape_*`), as metric names and label sets of a real scrape: the
//! per-host singletons (memory, load, vmstat, netstat, collectors, Go and
//! process metrics), then filesystems, network devices, disks and CPUs,
//! whose counts grow with the asked series count. node_exporter has no
//! classic histogram of its own, so one of its handler's
//! (`promhttp_metric_handler_request_duration_seconds`, client_golang's
//! default buckets) is added for `histogram_quantile` to read.

use super::rng::Rng;
use super::workload::{MetricType, SeriesDef, Shape};

/// Series per CPU, per disk, per network device and per filesystem, in
/// the order [`host`] emits them.
const PER_CPU: usize = 14;
const PER_DISK: usize = 14;
const PER_NIC: usize = 14;
const PER_FS: usize = 7;

const COLLECTORS: [&str; 46] = [
    "arp",
    "bcache",
    "bonding",
    "btrfs",
    "conntrack",
    "cpu",
    "cpufreq",
    "diskstats",
    "dmi",
    "edac",
    "entropy",
    "fibrechannel",
    "filefd",
    "filesystem",
    "hwmon",
    "infiniband",
    "ipvs",
    "loadavg",
    "mdadm",
    "meminfo",
    "netclass",
    "netdev",
    "netstat",
    "nfs",
    "nfsd",
    "nvme",
    "os",
    "powersupplyclass",
    "pressure",
    "rapl",
    "schedstat",
    "selinux",
    "sockstat",
    "softnet",
    "stat",
    "tapestats",
    "textfile",
    "thermal_zone",
    "time",
    "timex",
    "udp_queues",
    "uname",
    "vmstat",
    "xfs",
    "zfs",
    "systemd",
];

/// client_golang's `DefBuckets` and `+Inf`.
const BUCKETS: [f64; 12] = [
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    f64::INFINITY,
];

/// Builds one host's series list.
struct Host<'r> {
    out: Vec<SeriesDef>,
    rng: &'r mut Rng,
}

fn counter(rate: f64, per_unit: f64) -> Shape {
    Shape::Counter { rate, per_unit }
}

fn gauge(lo: f64, hi: f64, step: f64, per_unit: f64) -> Shape {
    Shape::Gauge {
        lo,
        hi,
        step,
        per_unit,
    }
}

impl Host<'_> {
    fn push(&mut self, name: &str, labels: &[(&str, &str)], metric_type: MetricType, shape: Shape) {
        let mut l: Vec<(String, String)> = labels
            .iter()
            .map(|(n, v)| ((*n).to_string(), (*v).to_string()))
            .collect();
        l.push(("__name__".into(), name.into()));
        self.out.push(SeriesDef {
            labels: l,
            metric_type,
            shape,
        });
    }

    fn c(&mut self, name: &str, labels: &[(&str, &str)], rate: f64, per_unit: f64) {
        self.push(name, labels, MetricType::Counter, counter(rate, per_unit));
    }

    fn g(&mut self, name: &str, labels: &[(&str, &str)], shape: Shape) {
        self.push(name, labels, MetricType::Gauge, shape);
    }

    /// A gauge that never changes.
    fn k(&mut self, name: &str, labels: &[(&str, &str)], v: f64) {
        self.push(name, labels, MetricType::Gauge, Shape::Constant(v));
    }

    /// Memory in pages, between `lo` and `hi` bytes.
    fn mem(&mut self, name: &str, lo: f64, hi: f64) {
        let step = (hi - lo) * 0.01;
        self.g(name, &[], gauge(lo, hi, step, 1.0 / 4096.0));
    }

    fn singletons(&mut self) {
        let gib = f64::from(1u32 << 30);
        let total = gib * f64::from(8u32 << self.rng.upto(3));
        // Prometheus's own per-target series.
        self.k("up", &[], 1.0);
        self.g(
            "scrape_duration_seconds",
            &[],
            gauge(0.01, 0.05, 0.005, 1e6),
        );
        self.k("scrape_samples_scraped", &[], 1000.0);
        self.k("scrape_samples_post_metric_relabeling", &[], 1000.0);
        self.k("scrape_series_added", &[], 0.0);
        // loadavg, time, uname, os.
        self.g("node_load1", &[], gauge(0.0, 8.0, 0.3, 100.0));
        self.g("node_load5", &[], gauge(0.0, 6.0, 0.1, 100.0));
        self.g("node_load15", &[], gauge(0.0, 4.0, 0.05, 100.0));
        self.g("node_time_seconds", &[], Shape::ScrapeTime);
        let boot = 1.7e9 + (self.rng.upto(10_000_000) as f64);
        self.k("node_boot_time_seconds", &[], boot);
        self.k(
            "node_uname_info",
            &[
                ("domainname", "(none)"),
                ("machine", "x86_64"),
                ("nodename", "node"),
                ("release", "6.1.0-18-amd64"),
                ("sysname", "Linux"),
                (
                    "version",
                    "#1 SMP PREEMPT_DYNAMIC Debian 6.1.76-1 (2024-02-01)",
                ),
            ],
            1.0,
        );
        self.k(
            "node_os_info",
            &[
                ("id", "debian"),
                ("name", "Debian GNU/Linux"),
                ("pretty_name", "Debian GNU/Linux 12 (bookworm)"),
                ("version_id", "12"),
            ],
            1.0,
        );
        self.k(
            "node_exporter_build_info",
            &[("goversion", "go1.19.8"), ("version", "1.5.0")],
            1.0,
        );
        // meminfo.
        self.k("node_memory_MemTotal_bytes", &[], total);
        self.mem("node_memory_MemFree_bytes", total * 0.05, total * 0.4);
        self.mem("node_memory_MemAvailable_bytes", total * 0.3, total * 0.8);
        self.mem("node_memory_Buffers_bytes", total * 0.01, total * 0.03);
        self.mem("node_memory_Cached_bytes", total * 0.2, total * 0.5);
        self.mem("node_memory_Active_bytes", total * 0.2, total * 0.5);
        self.mem("node_memory_Inactive_bytes", total * 0.1, total * 0.3);
        self.mem("node_memory_Dirty_bytes", 0.0, total * 0.001);
        self.mem("node_memory_Slab_bytes", total * 0.02, total * 0.04);
        self.mem("node_memory_SReclaimable_bytes", total * 0.01, total * 0.03);
        self.mem("node_memory_SUnreclaim_bytes", total * 0.005, total * 0.01);
        self.mem("node_memory_Shmem_bytes", total * 0.001, total * 0.01);
        self.mem("node_memory_Mapped_bytes", total * 0.01, total * 0.05);
        self.mem("node_memory_PageTables_bytes", total * 0.001, total * 0.004);
        self.mem(
            "node_memory_KernelStack_bytes",
            total * 0.0005,
            total * 0.001,
        );
        self.mem("node_memory_Committed_AS_bytes", total * 0.3, total * 0.9);
        self.mem("node_memory_AnonPages_bytes", total * 0.1, total * 0.4);
        self.k("node_memory_Writeback_bytes", &[], 0.0);
        self.k("node_memory_SwapTotal_bytes", &[], 0.0);
        self.k("node_memory_SwapFree_bytes", &[], 0.0);
        self.k("node_memory_SwapCached_bytes", &[], 0.0);
        self.k("node_memory_CommitLimit_bytes", &[], total * 0.5);
        self.k("node_memory_HugePages_Total", &[], 0.0);
        self.k("node_memory_Hugepagesize_bytes", &[], 2_097_152.0);
        self.k("node_memory_VmallocTotal_bytes", &[], 35_184_372_087_808.0);
        // vmstat, stat, netstat, sockstat, misc.
        self.c("node_vmstat_pgfault", &[], 4000.0, 1.0);
        self.c("node_vmstat_pgmajfault", &[], 0.5, 1.0);
        self.c("node_vmstat_pgpgin", &[], 300.0, 1.0);
        self.c("node_vmstat_pgpgout", &[], 900.0, 1.0);
        self.c("node_vmstat_pswpin", &[], 0.0, 1.0);
        self.c("node_vmstat_pswpout", &[], 0.0, 1.0);
        self.c("node_vmstat_oom_kill", &[], 0.0, 1.0);
        self.c("node_context_switches_total", &[], 6000.0, 1.0);
        self.c("node_intr_total", &[], 4000.0, 1.0);
        self.c("node_forks_total", &[], 8.0, 1.0);
        self.g("node_procs_running", &[], gauge(1.0, 8.0, 2.0, 1.0));
        self.g("node_procs_blocked", &[], gauge(0.0, 2.0, 1.0, 1.0));
        self.g(
            "node_entropy_available_bits",
            &[],
            gauge(256.0, 256.0, 0.0, 1.0),
        );
        self.g(
            "node_filefd_allocated",
            &[],
            gauge(1500.0, 4000.0, 20.0, 1.0),
        );
        self.k("node_filefd_maximum", &[], 9_223_372_036_854_775_807.0);
        for (m, rate) in [
            ("ActiveOpens", 2.0),
            ("PassiveOpens", 5.0),
            ("RetransSegs", 0.2),
            ("InSegs", 400.0),
            ("OutSegs", 420.0),
            ("CurrEstab", 0.0),
        ] {
            self.c(&format!("node_netstat_Tcp_{m}"), &[], rate, 1.0);
        }
        self.c("node_netstat_Udp_InDatagrams", &[], 20.0, 1.0);
        self.c("node_netstat_Udp_OutDatagrams", &[], 20.0, 1.0);
        self.c("node_netstat_Udp_InErrors", &[], 0.0, 1.0);
        self.g("node_sockstat_TCP_inuse", &[], gauge(20.0, 200.0, 5.0, 1.0));
        self.g("node_sockstat_TCP_tw", &[], gauge(0.0, 100.0, 5.0, 1.0));
        self.g(
            "node_sockstat_sockets_used",
            &[],
            gauge(200.0, 800.0, 10.0, 1.0),
        );
        self.g(
            "node_nf_conntrack_entries",
            &[],
            gauge(50.0, 2000.0, 20.0, 1.0),
        );
        self.k("node_nf_conntrack_entries_limit", &[], 262_144.0);
        self.g(
            "node_timex_offset_seconds",
            &[],
            gauge(-0.001, 0.001, 0.0001, 1e6),
        );
        self.k("node_timex_sync_status", &[], 1.0);
        for kind in [
            "cpu_waiting",
            "io_waiting",
            "io_stalled",
            "memory_waiting",
            "memory_stalled",
        ] {
            self.c(
                &format!("node_pressure_{kind}_seconds_total"),
                &[],
                0.01,
                1e6,
            );
        }
        for c in COLLECTORS {
            self.g(
                "node_scrape_collector_duration_seconds",
                &[("collector", c)],
                gauge(0.00001, 0.01, 0.001, 1e9),
            );
            self.k("node_scrape_collector_success", &[("collector", c)], 1.0);
        }
        // client_golang's Go and process collectors.
        for q in ["0", "0.25", "0.5", "0.75", "1"] {
            self.g(
                "go_gc_duration_seconds",
                &[("quantile", q)],
                gauge(0.00002, 0.002, 0.0001, 1e9),
            );
        }
        self.c("go_gc_duration_seconds_sum", &[], 0.0005, 1e9);
        self.c("go_gc_duration_seconds_count", &[], 0.1, 1.0);
        self.g("go_goroutines", &[], gauge(7.0, 9.0, 1.0, 1.0));
        self.k("go_threads", &[], 8.0);
        self.k("go_info", &[("version", "go1.19.8")], 1.0);
        for m in [
            "alloc_bytes",
            "heap_alloc_bytes",
            "heap_idle_bytes",
            "heap_inuse_bytes",
            "heap_released_bytes",
            "heap_sys_bytes",
            "heap_objects",
            "mspan_inuse_bytes",
            "next_gc_bytes",
            "stack_inuse_bytes",
            "sys_bytes",
        ] {
            self.mem(&format!("go_memstats_{m}"), 2e6, 2e7);
        }
        for m in [
            "buck_hash_sys_bytes",
            "mcache_inuse_bytes",
            "mcache_sys_bytes",
            "mspan_sys_bytes",
            "other_sys_bytes",
            "stack_sys_bytes",
            "gc_sys_bytes",
            "lookups_total",
        ] {
            let v = self.rng.upto(2_000_000) as f64;
            self.k(&format!("go_memstats_{m}"), &[], v);
        }
        self.c("go_memstats_alloc_bytes_total", &[], 200_000.0, 1.0);
        self.c("go_memstats_mallocs_total", &[], 2000.0, 1.0);
        self.c("go_memstats_frees_total", &[], 1990.0, 1.0);
        self.g("go_memstats_last_gc_time_seconds", &[], Shape::ScrapeTime);
        self.c("process_cpu_seconds_total", &[], 0.005, 100.0);
        self.mem("process_resident_memory_bytes", 1.5e7, 3e7);
        self.mem("process_virtual_memory_bytes", 7e8, 8e8);
        self.g("process_open_fds", &[], gauge(8.0, 12.0, 1.0, 1.0));
        self.k("process_max_fds", &[], 1_048_576.0);
        self.k("process_start_time_seconds", &[], 1.7e9 + 1.0e7);
        self.c(
            "promhttp_metric_handler_requests_total",
            &[("code", "200")],
            1.0 / 15.0,
            1.0,
        );
        self.c(
            "promhttp_metric_handler_requests_total",
            &[("code", "500")],
            0.0,
            1.0,
        );
        self.c(
            "promhttp_metric_handler_requests_total",
            &[("code", "503")],
            0.0,
            1.0,
        );
        self.k("promhttp_metric_handler_requests_in_flight", &[], 1.0);
        let name = "promhttp_metric_handler_request_duration_seconds";
        for le in BUCKETS {
            let le_text = if le.is_infinite() {
                "+Inf".to_string()
            } else {
                le.to_string()
            };
            self.push(
                &format!("{name}_bucket"),
                &[("le", &le_text)],
                MetricType::Histogram,
                Shape::Bucket { le },
            );
        }
        self.push(
            &format!("{name}_sum"),
            &[],
            MetricType::Histogram,
            Shape::HistSum,
        );
        self.push(
            &format!("{name}_count"),
            &[],
            MetricType::Histogram,
            Shape::HistCount,
        );
    }

    fn filesystem(&mut self, i: usize) {
        let (device, fstype, mountpoint) = match i {
            0 => ("/dev/vda1".to_string(), "ext4", "/".to_string()),
            1 => ("/dev/vda15".to_string(), "vfat", "/boot/efi".to_string()),
            2 => ("tmpfs".to_string(), "tmpfs", "/run".to_string()),
            3 => ("tmpfs".to_string(), "tmpfs", "/run/lock".to_string()),
            _ => (
                format!("/dev/vd{}1", char::from(b'b' + (i % 24) as u8)),
                "xfs",
                format!("/srv/data{i}"),
            ),
        };
        let l = [
            ("device", device.as_str()),
            ("fstype", fstype),
            ("mountpoint", mountpoint.as_str()),
        ];
        let size = 4096.0 * (1u64 << (18 + self.rng.upto(8))) as f64;
        self.k("node_filesystem_size_bytes", &l, size);
        self.g(
            "node_filesystem_avail_bytes",
            &l,
            gauge(size * 0.2, size * 0.8, size * 0.0005, 1.0 / 4096.0),
        );
        self.g(
            "node_filesystem_free_bytes",
            &l,
            gauge(size * 0.25, size * 0.85, size * 0.0005, 1.0 / 4096.0),
        );
        self.k("node_filesystem_files", &l, size / 16384.0);
        self.g(
            "node_filesystem_files_free",
            &l,
            gauge(size / 20000.0, size / 16384.0, 10.0, 1.0),
        );
        self.k("node_filesystem_readonly", &l, 0.0);
        self.k("node_filesystem_device_error", &l, 0.0);
    }

    fn nic(&mut self, i: usize) {
        let device = match i {
            0 => "lo".to_string(),
            1 => "eth0".to_string(),
            2 => "docker0".to_string(),
            _ => format!(
                "veth{:07x}",
                (i as u64).wrapping_mul(0x9e37_79b9) & 0xfff_ffff
            ),
        };
        let l = [("device", device.as_str())];
        let busy = if i == 1 { 1.0 } else { 0.05 };
        self.c(
            "node_network_receive_bytes_total",
            &l,
            200_000.0 * busy,
            1.0,
        );
        self.c(
            "node_network_transmit_bytes_total",
            &l,
            150_000.0 * busy,
            1.0,
        );
        self.c("node_network_receive_packets_total", &l, 300.0 * busy, 1.0);
        self.c("node_network_transmit_packets_total", &l, 250.0 * busy, 1.0);
        self.c("node_network_receive_multicast_total", &l, 0.1 * busy, 1.0);
        self.c("node_network_receive_errs_total", &l, 0.0, 1.0);
        self.c("node_network_transmit_errs_total", &l, 0.0, 1.0);
        self.c("node_network_receive_drop_total", &l, 0.001, 1.0);
        self.c("node_network_transmit_drop_total", &l, 0.0, 1.0);
        self.k("node_network_up", &l, 1.0);
        self.k("node_network_carrier", &l, 1.0);
        self.k(
            "node_network_mtu_bytes",
            &l,
            if i == 0 { 65536.0 } else { 1500.0 },
        );
        self.k("node_network_speed_bytes", &l, 1_250_000_000.0);
        self.k("node_network_transmit_queue_length", &l, 1000.0);
    }

    fn disk(&mut self, i: usize) {
        let device = if i < 26 {
            format!("vd{}", char::from(b'a' + i as u8))
        } else {
            format!("nvme{}n1", i - 26)
        };
        let l = [("device", device.as_str())];
        let busy = if i == 0 { 1.0 } else { 0.2 };
        self.c(
            "node_disk_read_bytes_total",
            &l,
            50_000.0 * busy,
            1.0 / 512.0,
        );
        self.c(
            "node_disk_written_bytes_total",
            &l,
            400_000.0 * busy,
            1.0 / 512.0,
        );
        self.c("node_disk_reads_completed_total", &l, 5.0 * busy, 1.0);
        self.c("node_disk_writes_completed_total", &l, 40.0 * busy, 1.0);
        self.c("node_disk_reads_merged_total", &l, 0.5 * busy, 1.0);
        self.c("node_disk_writes_merged_total", &l, 20.0 * busy, 1.0);
        self.c(
            "node_disk_read_time_seconds_total",
            &l,
            0.002 * busy,
            1000.0,
        );
        self.c(
            "node_disk_write_time_seconds_total",
            &l,
            0.03 * busy,
            1000.0,
        );
        self.c("node_disk_io_time_seconds_total", &l, 0.02 * busy, 1000.0);
        self.c(
            "node_disk_io_time_weighted_seconds_total",
            &l,
            0.04 * busy,
            1000.0,
        );
        self.c("node_disk_flush_requests_total", &l, 2.0 * busy, 1.0);
        self.c("node_disk_discards_completed_total", &l, 0.0, 1.0);
        self.c("node_disk_discarded_sectors_total", &l, 0.0, 1.0);
        self.g("node_disk_io_now", &l, gauge(0.0, 3.0, 1.0, 1.0));
    }

    fn cpu(&mut self, i: usize) {
        let cpu = i.to_string();
        // Shares of one CPU second, as /proc/stat on a lightly loaded host.
        for (mode, share) in [
            ("idle", 0.85),
            ("iowait", 0.01),
            ("irq", 0.0),
            ("nice", 0.0),
            ("softirq", 0.005),
            ("steal", 0.002),
            ("system", 0.04),
            ("user", 0.09),
        ] {
            self.c(
                "node_cpu_seconds_total",
                &[("cpu", &cpu), ("mode", mode)],
                share,
                100.0,
            );
        }
        for mode in ["nice", "user"] {
            self.c(
                "node_cpu_guest_seconds_total",
                &[("cpu", &cpu), ("mode", mode)],
                0.0,
                100.0,
            );
        }
        self.g(
            "node_cpu_scaling_frequency_hertz",
            &[("cpu", &cpu)],
            gauge(1.2e9, 3.4e9, 4e8, 1e-3),
        );
        self.c("node_softnet_processed_total", &[("cpu", &cpu)], 40.0, 1.0);
        self.c("node_softnet_dropped_total", &[("cpu", &cpu)], 0.0, 1.0);
        self.c(
            "node_softnet_times_squeezed_total",
            &[("cpu", &cpu)],
            0.001,
            1.0,
        );
    }
}

/// Device counts of a host with CPU count `cpus`: a disk per 8 CPUs, a
/// filesystem and network device per 6, 8 of each at most.
fn devices(cpus: usize) -> (usize, usize, usize) {
    let disks = (1 + cpus / 8).min(8);
    let fs = (4 + cpus / 6).min(8);
    let nics = (2 + cpus / 6).min(8);
    (disks, fs, nics)
}

/// The series of one host, `m` of them: the smallest host with at least
/// `m` series, with its last CPU cut short to fit (below ~300 series the
/// list is a prefix of the one-CPU host). Labels have no `instance` or
/// `job` yet.
pub(crate) fn host(m: usize, rng: &mut Rng) -> Vec<SeriesDef> {
    let mut h = Host {
        out: Vec::with_capacity(m),
        rng,
    };
    h.singletons();
    let base = h.out.len();
    let size = |cpus: usize| {
        let (d, f, n) = devices(cpus);
        base + d * PER_DISK + f * PER_FS + n * PER_NIC + cpus * PER_CPU
    };
    let mut cpus = 1;
    while size(cpus) < m {
        cpus += 1;
    }
    let (disks, fs, nics) = devices(cpus);
    for i in 0..fs {
        h.filesystem(i);
    }
    for i in 0..nics {
        h.nic(i);
    }
    for i in 0..disks {
        h.disk(i);
    }
    for i in 0..cpus {
        h.cpu(i);
    }
    h.out.truncate(m);
    h.out
}

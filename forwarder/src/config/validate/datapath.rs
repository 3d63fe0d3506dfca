//! `[datapath]` and `[control]`: sizes within bounds, CPUs online and listed once, an absolute
//! control socket path.

use std::path::PathBuf;

use super::super::cpus::format_cpu_list;
use super::super::model::{Control, Datapath, Workers};
use super::super::raw::{RawControl, RawDatapath, S};
use super::{Checker, FLOW_CAPACITY_RANGE, FRAMES_PER_WORKER_RANGE};

impl Checker<'_> {
    /// What workers, modes and sizes does `[datapath]` ask for?
    pub(super) fn datapath(
        &mut self,
        raw: Option<RawDatapath>,
        online_cpus: Option<&[u32]>,
    ) -> Datapath {
        let mut datapath = Datapath {
            workers: Workers::Auto,
            mode: Default::default(),
            idle: Default::default(),
            flow_capacity: Datapath::DEFAULT_FLOW_CAPACITY,
            frames_per_worker: Datapath::DEFAULT_FRAMES_PER_WORKER,
            flow_share_pressure_percent: Datapath::DEFAULT_FLOW_SHARE_PRESSURE_PERCENT,
            flow_share_floor: Datapath::DEFAULT_FLOW_SHARE_FLOOR,
            cpus: Vec::new(),
            pin_name: None,
            syn_per_host_per_s: Datapath::DEFAULT_SYN_PER_HOST_PER_S,
            syn_per_host_burst: Datapath::DEFAULT_SYN_PER_HOST_BURST,
            syn_per_s: Datapath::DEFAULT_SYN_PER_S,
            syn_burst: Datapath::DEFAULT_SYN_BURST,
            inbound_syn_per_s: Datapath::DEFAULT_INBOUND_SYN_PER_S,
            inbound_syn_burst: Datapath::DEFAULT_INBOUND_SYN_BURST,
            fragment_datagrams: Datapath::DEFAULT_FRAGMENT_DATAGRAMS,
            fragment_held: Datapath::DEFAULT_FRAGMENT_HELD,
            fragment_timeout: Datapath::DEFAULT_FRAGMENT_TIMEOUT,
        };
        let Some(mut raw) = raw else { return datapath };
        self.admission(&mut raw, &mut datapath);
        self.fragments(&mut raw, &mut datapath);
        if let Some(name) = raw.pin_name {
            datapath.pin_name = Some(self.pin_name(name));
        }
        if let Some(cpus) = raw.cpus {
            datapath.cpus = self.cpus(cpus, online_cpus);
        }
        if let Some(workers) = raw.workers {
            datapath.workers = workers.into_inner();
        }
        if let Some(mode) = raw.mode {
            datapath.mode = mode.into_inner();
        }
        if let Some(idle) = raw.idle {
            datapath.idle = idle.into_inner();
        }
        if let Some(capacity) = raw.flow_capacity {
            let (low, high) = FLOW_CAPACITY_RANGE;
            if !(low..=high).contains(capacity.get_ref()) {
                let message = format!("{} flows: must be {low}-{high}", capacity.get_ref());
                self.fail(capacity.span(), "datapath.flow_capacity", message);
            }
            datapath.flow_capacity = capacity.into_inner();
        }
        if let Some(frames) = raw.frames_per_worker {
            let (low, high) = FRAMES_PER_WORKER_RANGE;
            let value = *frames.get_ref();
            if !value.is_power_of_two() || !(low..=high).contains(&value) {
                let message = format!("{value} frames: must be a power of two, {low}-{high}");
                self.fail(frames.span(), "datapath.frames_per_worker", message);
            }
            datapath.frames_per_worker = value;
        }
        self.flow_share(
            raw.flow_share_pressure_percent,
            raw.flow_share_floor,
            &mut datapath,
        );
        datapath
    }

    /// `[datapath] cpus`: not empty, no duplicate, each online (when `online` is known).
    fn cpus(&mut self, raw: S<Vec<S<u32>>>, online: Option<&[u32]>) -> Vec<u32> {
        const FIELD: &str = "datapath.cpus";
        let span = raw.span();
        let raw = raw.into_inner();
        if raw.is_empty() {
            self.fail(
                span,
                FIELD,
                "empty: list at least one CPU id, or remove the key to use every CPU",
            );
            return Vec::new();
        }
        let mut cpus = Vec::with_capacity(raw.len());
        for (index, cpu) in raw.into_iter().enumerate() {
            let field = format!("{FIELD}[{index}]");
            let id = *cpu.get_ref();
            if cpus.contains(&id) {
                self.fail(cpu.span(), &field, format!("CPU {id} is listed twice"));
            } else if let Some(online) = online.filter(|online| !online.contains(&id)) {
                let message = format!(
                    "CPU {id} is not online on this machine (online CPUs: {})",
                    format_cpu_list(online)
                );
                self.fail(cpu.span(), &field, message);
            }
            cpus.push(id);
        }
        cpus
    }

    /// Where does the control socket live?
    pub(super) fn control(&mut self, raw: Option<RawControl>) -> Control {
        let mut control = Control {
            socket: PathBuf::from(Control::DEFAULT_SOCKET),
        };
        if let Some(socket) = raw.and_then(|raw| raw.socket) {
            if !socket.get_ref().is_absolute() {
                self.fail(
                    socket.span(),
                    "control.socket",
                    format!("`{}` is not an absolute path", socket.get_ref().display()),
                );
            }
            control.socket = socket.into_inner();
        }
        control
    }

    /// Is `[datapath] pin_name` one path component under `/sys/fs/bpf/flowpin/`?
    fn pin_name(&mut self, name: S<String>) -> String {
        let text = name.get_ref();
        let well_formed = (1..=Datapath::PIN_NAME_MAX).contains(&text.len())
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
            && text != "."
            && text != "..";
        if !well_formed {
            let message = format!(
                "{text:?}: must be 1-{} characters of A-Z a-z 0-9 _ . - (not . or ..)",
                Datapath::PIN_NAME_MAX
            );
            self.fail(name.span(), "datapath.pin_name", message);
        }
        name.into_inner()
    }
}

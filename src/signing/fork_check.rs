//! Is a request's fork info one of the configured network's? A validator client pointed at a
//! beacon node of another network (or a dvsigner started with the wrong `--network`) sends fork
//! versions and a genesis_validators_root the node's network never had; signing them would sign
//! for the other network (or fail later on preset-dependent SSZ sizes with an unhelpful
//! message). This check runs on the parsed request before any payload is SSZ-decoded.
//!
//! Signals, in the request:
//! - `fork_info.genesis_validators_root`: must be the configured network's when that is known
//!   (built-in networks, and copies of their config files); otherwise a root of a built-in
//!   network only counts together with fork versions outside the configured schedule (a shadow
//!   fork of mainnet legitimately shares mainnet's root);
//! - `fork_info.fork.previous_version` / `current_version`: must be versions of the configured
//!   schedule (scheduled or not);
//! - `deposit.genesis_fork_version` (DEPOSIT): must be the configured GENESIS_FORK_VERSION.
//!
//! A version outside the schedule that belongs to no network this build knows, with the
//! configured network's root (or, when that is unknown, next to a version of the schedule), is
//! a hard fork the configured schedule does not have yet: [`MismatchKind::UnknownFork`].

use std::fmt;

use super::network::{known_fork_tables, known_roots, Network, ScheduledFork, MINIMAL_NAME};

/// What kind of mismatch a request has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MismatchKind {
    /// The request is for another network (or one this build does not know).
    OtherNetwork,
    /// The request is for the configured network, after a fork its schedule does not have.
    UnknownFork,
}

impl MismatchKind {
    /// The `reason` label of the metric.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OtherNetwork => "other_network",
            Self::UnknownFork => "unknown_fork",
        }
    }
}

/// A request whose fork info does not fit the configured network (a 400 answer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkMismatch {
    /// Which kind.
    pub kind: MismatchKind,
    /// The fork version that identifies the case in metrics and logs: the first version that
    /// is not in the schedule, else the request's current version.
    pub fork_version: [u8; 4],
    message: String,
}

impl fmt::Display for NetworkMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// `0x`-prefixed lower-case hex.
pub fn hex4(v: [u8; 4]) -> String {
    format!("0x{}", hex::encode(v))
}

fn hex32(v: [u8; 32]) -> String {
    format!("0x{}", hex::encode(v))
}

/// The network a fork version belongs to, if this build knows one.
fn version_owner(v: [u8; 4]) -> Option<&'static str> {
    known_fork_tables()
        .find(|(_, table)| {
            table
                .iter()
                .any(|(_, version, _)| version.to_be_bytes() == v)
        })
        .map(|(name, _)| name)
}

/// The built-in network whose genesis_validators_root this is.
fn root_owner(root: [u8; 32]) -> Option<&'static str> {
    known_roots()
        .find(|(_, r)| *r == root)
        .map(|(name, _)| name)
}

fn describe_owner(owner: Option<&str>) -> String {
    match owner {
        Some(MINIMAL_NAME) => "of the minimal preset (spec tests, local devnets)".to_owned(),
        Some(name) => format!("{name}'s"),
        None => "of no network this dvsigner knows".to_owned(),
    }
}

fn fix_for(owner: Option<&str>) -> String {
    match owner {
        Some(MINIMAL_NAME) => {
            "start dvsigner with --network PATH to that minimal-preset network's config.yaml"
                .to_owned()
        }
        Some(name) => format!("start dvsigner with --network {name}"),
        None => "start dvsigner with --network PATH to that network's config.yaml".to_owned(),
    }
}

impl Network {
    /// The last fork with an activation epoch (genesis when no other is scheduled).
    pub fn last_scheduled_fork(&self) -> Option<&ScheduledFork> {
        self.forks.iter().rev().find(|f| f.epoch != u64::MAX)
    }

    fn in_schedule(&self, v: [u8; 4]) -> bool {
        self.forks.iter().any(|f| f.version == v)
    }

    fn last_fork_text(&self) -> String {
        match self.last_scheduled_fork() {
            Some(f) => format!(
                "whose last fork is {} ({}) at epoch {}",
                f.name(),
                hex4(f.version),
                f.epoch
            ),
            None => "which has no scheduled fork".to_owned(),
        }
    }

    /// Checks a request's `fork_info` against this network.
    ///
    /// # Errors
    /// A [`NetworkMismatch`] whose message names this network, the values received, the network
    /// they belong to when known, and the likely fix.
    pub fn check_fork_info(
        &self,
        previous: [u8; 4],
        current: [u8; 4],
        fork_epoch: u64,
        root: [u8; 32],
    ) -> Result<(), NetworkMismatch> {
        let root_ok = self.genesis_validators_root.is_none_or(|own| own == root);
        let mut outside: Vec<(&str, [u8; 4])> = Vec::new();
        if previous == current {
            if !self.in_schedule(current) {
                outside.push(("previous_version and current_version", current));
            }
        } else {
            for (field, v) in [("current_version", current), ("previous_version", previous)] {
                if !self.in_schedule(v) {
                    outside.push((field, v));
                }
            }
        }
        if root_ok && outside.is_empty() {
            return Ok(());
        }
        let fork_version = outside.first().map_or(current, |(_, v)| *v);
        let foreign_root = root_owner(root).filter(|o| !o.eq_ignore_ascii_case(&self.name));
        // A version of the built-in network of this name that a config file lacks counts as
        // unknown to this schedule, not as another network's.
        let versions_unidentified = outside.iter().all(|(_, v)| {
            version_owner(*v).is_none_or(|owner| owner.eq_ignore_ascii_case(&self.name))
        });
        let root_is_own = self.genesis_validators_root == Some(root);
        let some_version_known = self.in_schedule(previous) || self.in_schedule(current);
        if root_ok
            && versions_unidentified
            && (root_is_own || (some_version_known && foreign_root.is_none()))
        {
            let evidence = if root_is_own {
                format!("the request's genesis_validators_root is {}'s", self.name)
            } else {
                "its other fork version is in that schedule".to_owned()
            };
            let field = outside.first().map_or("current_version", |(f, _)| *f);
            let message = format!(
                "unknown fork: fork_info.fork.{field} {} (fork_info.fork.epoch {fork_epoch}) \
                 is not in this dvsigner's {} fork schedule, {}, yet {evidence}: the network has \
                 forked to a version this dvsigner does not know. Upgrade dvsigner (or the \
                 --network config file) to a release that schedules this fork",
                hex4(fork_version),
                self.name,
                self.last_fork_text(),
            );
            return Err(NetworkMismatch {
                kind: MismatchKind::UnknownFork,
                fork_version,
                message,
            });
        }
        let mut details = Vec::new();
        let mut guess = None;
        for (field, v) in &outside {
            let owner = version_owner(*v);
            guess = guess.or(owner);
            details.push(format!(
                "fork_info.fork.{field} {} is {} (not in the {} schedule)",
                hex4(*v),
                describe_owner(owner),
                self.name
            ));
        }
        if !root_ok || foreign_root.is_some() {
            let owner = root_owner(root);
            guess = guess.or(owner);
            let own = match self.genesis_validators_root {
                Some(own) => format!("; {}'s is {}", self.name, hex32(own)),
                None => String::new(),
            };
            details.push(format!(
                "fork_info.genesis_validators_root {} is {}{own}",
                hex32(root),
                describe_owner(owner)
            ));
        }
        Err(self.other_network(fork_version, guess, &details))
    }

    /// Checks a DEPOSIT's `genesis_fork_version` against this network's GENESIS_FORK_VERSION.
    ///
    /// # Errors
    /// A [`NetworkMismatch`] as for [`Network::check_fork_info`].
    pub fn check_deposit_version(&self, version: [u8; 4]) -> Result<(), NetworkMismatch> {
        if version == self.genesis_fork_version {
            return Ok(());
        }
        let owner = version_owner(version);
        let detail = format!(
            "deposit.genesis_fork_version {} is {} ({}'s GENESIS_FORK_VERSION is {})",
            hex4(version),
            describe_owner(owner),
            self.name,
            hex4(self.genesis_fork_version)
        );
        Err(self.other_network(version, owner, &[detail]))
    }

    fn other_network(
        &self,
        fork_version: [u8; 4],
        guess: Option<&str>,
        details: &[String],
    ) -> NetworkMismatch {
        let from = match guess {
            Some(MINIMAL_NAME) => "a minimal-preset network".to_owned(),
            Some(name) => name.to_owned(),
            None => "an unknown network".to_owned(),
        };
        let message = format!(
            "wrong network: this dvsigner is configured for {} (--network), the request is for \
             {from}: {}. Point the validator client at a {} beacon node, or {}",
            self.name,
            details.join("; "),
            self.name,
            fix_for(guess)
        );
        NetworkMismatch {
            kind: MismatchKind::OtherNetwork,
            fork_version,
            message,
        }
    }

    /// Forks that the built-in network of the same name schedules and this (file) config does
    /// not, as (name, version, epoch): a config file older than this build.
    pub fn forks_missing_from_config(&self) -> Vec<ScheduledFork> {
        let Some(built_in) = Network::built_in(&self.name) else {
            return Vec::new();
        };
        if built_in.genesis_fork_version != self.genesis_fork_version {
            return Vec::new();
        }
        built_in
            .forks
            .into_iter()
            .filter(|f| f.epoch != u64::MAX && !self.forks.contains(f))
            .collect()
    }

    /// The epoch at unix time `now`, when the genesis time is known and passed.
    pub fn epoch_at_time(&self, now: u64) -> Option<u64> {
        let genesis = self.genesis_time?;
        let slot = now.checked_sub(genesis)? / self.seconds_per_slot.max(1);
        Some(self.epoch_at_slot(slot))
    }

    /// The first fork scheduled after `epoch`.
    pub fn next_fork_after(&self, epoch: u64) -> Option<&ScheduledFork> {
        self.forks
            .iter()
            .find(|f| f.epoch > epoch && f.epoch != u64::MAX)
    }
}

impl Network {
    /// Logs what this process signs for: name, genesis fork version, preset, genesis
    /// validators root (when known), the last scheduled fork and the next one, if any.
    pub fn log_startup(&self, role: &str) {
        let now = unix_now();
        let epoch = now.and_then(|t| self.epoch_at_time(t));
        let last = self.last_scheduled_fork();
        let next = epoch.and_then(|e| self.next_fork_after(e));
        tracing::info!(
            role,
            network = %self.name,
            genesis_fork_version = %hex4(self.genesis_fork_version),
            preset = ?self.preset,
            genesis_validators_root = %self
                .genesis_validators_root
                .map_or_else(|| "unknown".to_owned(), hex32),
            last_fork = last.map_or("none", |f| f.name()),
            last_fork_version = %last.map_or_else(String::new, |f| hex4(f.version)),
            last_fork_epoch = last.map_or(0, |f| f.epoch),
            current_epoch = %epoch.map_or_else(|| "unknown".to_owned(), |e| e.to_string()),
            next_fork = %next.map_or_else(
                || "none scheduled".to_owned(),
                |f| format!("{} ({}) at epoch {}", f.name(), hex4(f.version), f.epoch)
            ),
            "network"
        );
    }

    /// Warnings about the configured schedule at unix time `now`: forks that this build's
    /// built-in schedule of the same network has and the config file lacks. Empty for a
    /// built-in network (this build cannot know forks announced after it).
    pub fn schedule_warnings(&self, now: Option<u64>) -> Vec<String> {
        let epoch = now.and_then(|t| self.epoch_at_time(t));
        self.forks_missing_from_config()
            .into_iter()
            .map(|f| {
                let when = match epoch {
                    Some(e) if e >= f.epoch => format!(
                        "it is active since epoch {} (now {e}): requests of it are refused as an \
                         unknown fork",
                        f.epoch
                    ),
                    Some(e) => format!(
                        "it activates at epoch {} (now {e}): from then on its requests will be \
                         refused as an unknown fork",
                        f.epoch
                    ),
                    None => format!("it activates at epoch {}", f.epoch),
                };
                format!(
                    "the --network config file of {} lacks fork {} ({}) that this dvsigner's \
                     built-in {} schedule has; {when}. Update the config file or use --network {}",
                    self.name,
                    f.name(),
                    hex4(f.version),
                    self.name,
                    self.name
                )
            })
            .collect()
    }
}

/// Seconds since the Unix epoch (None if the clock is before it).
pub fn unix_now() -> Option<u64> {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs())
}

/// Logs [`Network::schedule_warnings`] now and every `every`, for the life of the task.
pub fn spawn_schedule_watch(
    network: Network,
    every: std::time::Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            for warning in network.schedule_warnings(unix_now()) {
                tracing::warn!("{warning}");
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAINNET_GVR: &str = "0x4b363db94e286120d76eb905340fdd4e54bfe9f06bf33ff6cf5ad27f511bfe95";
    const HOLESKY_GVR: &str = "0x9143aa7c615a7f7115e2b6aac319c03529df8242ae705fba9df39b79c59fa8b1";

    fn root(s: &str) -> [u8; 32] {
        crate::bls::parse_hex::<32>(s).expect("root")
    }

    fn v(x: u32) -> [u8; 4] {
        x.to_be_bytes()
    }

    #[test]
    fn mainnet_accepts_its_own_fork_info() {
        let m = Network::built_in("mainnet").expect("mainnet");
        let gvr = root(MAINNET_GVR);
        for (p, c) in [(0, 0), (0, 0x0100_0000), (0x0500_0000, 0x0600_0000)] {
            assert_eq!(m.check_fork_info(v(p), v(c), 0, gvr), Ok(()));
        }
        assert_eq!(m.check_deposit_version(v(0)), Ok(()));
    }

    #[test]
    fn other_networks_are_named() {
        let m = Network::built_in("mainnet").expect("mainnet");
        let e = m
            .check_fork_info(v(0x0601_7000), v(0x0701_7000), 0, root(HOLESKY_GVR))
            .expect_err("holesky");
        assert_eq!(e.kind, MismatchKind::OtherNetwork);
        assert_eq!(e.fork_version, v(0x0701_7000));
        let text = e.to_string();
        for part in [
            "configured for mainnet",
            "0x07017000 is holesky's",
            "--network holesky",
        ] {
            assert!(text.contains(part), "{part}: {text}");
        }
        let e = m
            .check_fork_info(v(1), v(1), 1, root(MAINNET_GVR))
            .expect_err("minimal");
        assert!(e.to_string().contains("minimal preset"), "{e}");
        // Only the root is wrong.
        let e = m
            .check_fork_info(v(0x0500_0000), v(0x0600_0000), 0, root(HOLESKY_GVR))
            .expect_err("root");
        assert_eq!(e.kind, MismatchKind::OtherNetwork);
        assert!(
            e.to_string().contains("is holesky's; mainnet's is 0x4b36"),
            "{e}"
        );
        let e = m.check_deposit_version(v(0x1000_0910)).expect_err("hoodi");
        assert!(e.to_string().contains("hoodi's"), "{e}");
    }

    #[test]
    fn an_unknown_version_with_the_own_root_is_an_unknown_fork() {
        let m = Network::built_in("mainnet").expect("mainnet");
        let e = m
            .check_fork_info(v(0x0600_0000), v(0x0700_0000), 500_000, root(MAINNET_GVR))
            .expect_err("unknown fork");
        assert_eq!(e.kind, MismatchKind::UnknownFork);
        assert_eq!(e.fork_version, v(0x0700_0000));
        let text = e.to_string();
        assert!(text.contains("FULU (0x06000000) at epoch 411392"), "{text}");
        assert!(text.contains("Upgrade dvsigner"), "{text}");
        // The same version with an unknown root is an unknown network.
        let e = m
            .check_fork_info(v(0x0600_0000), v(0x0700_0000), 500_000, [9; 32])
            .expect_err("unknown network");
        assert_eq!(e.kind, MismatchKind::OtherNetwork);
        assert!(e.to_string().contains("an unknown network"), "{e}");
    }

    #[test]
    fn custom_networks_check_versions_and_foreign_roots() {
        let devnet = Network::minimal_test();
        assert!(devnet.genesis_validators_root.is_none());
        // A shadow fork shares mainnet's root: its own versions pass.
        assert_eq!(
            devnet.check_fork_info(v(1), v(0x0100_0001), 0, root(MAINNET_GVR)),
            Ok(())
        );
        let e = devnet
            .check_fork_info(v(0x0500_0000), v(0x0600_0000), 0, root(MAINNET_GVR))
            .expect_err("mainnet");
        assert!(e.to_string().contains("--network mainnet"), "{e}");
        let e = devnet
            .check_fork_info(v(0x0600_0001), v(0x0700_0001), 0, [3; 32])
            .expect_err("unknown fork");
        assert_eq!(e.kind, MismatchKind::UnknownFork);
    }

    #[test]
    fn a_config_copy_of_a_built_in_knows_its_root_and_missing_forks() {
        let yaml = "CONFIG_NAME: mainnet\nPRESET_BASE: mainnet\nSECONDS_PER_SLOT: 12\n\
                    GENESIS_FORK_VERSION: 0x00000000\nALTAIR_FORK_VERSION: 0x01000000\n\
                    ALTAIR_FORK_EPOCH: 74240\n";
        let n = Network::from_config_yaml(yaml).expect("yaml");
        assert_eq!(n.genesis_validators_root, Some(root(MAINNET_GVR)));
        // Mainnet's Bellatrix, which this copy lacks, is an unknown fork, not another network.
        let e = n
            .check_fork_info(v(0x0100_0000), v(0x0200_0000), 144_896, root(MAINNET_GVR))
            .expect_err("missing fork");
        assert_eq!(e.kind, MismatchKind::UnknownFork, "{e}");
        assert!(
            e.to_string().contains("ALTAIR (0x01000000) at epoch 74240"),
            "{e}"
        );
        let missing: Vec<String> = n
            .forks_missing_from_config()
            .into_iter()
            .map(|f| f.name().to_owned())
            .collect();
        assert_eq!(
            missing,
            ["BELLATRIX", "CAPELLA", "DENEB", "ELECTRA", "FULU"]
        );
        assert!(Network::built_in("mainnet")
            .expect("mainnet")
            .forks_missing_from_config()
            .is_empty());
        // At a time between Electra and Fulu: Electra is active, Fulu is coming.
        let genesis = n.genesis_time.expect("genesis");
        let at_epoch = |e: u64| genesis + e * 32 * 12;
        let w = n.schedule_warnings(Some(at_epoch(400_000)));
        assert_eq!(w.len(), 5);
        assert!(w[3].contains("ELECTRA (0x05000000)"), "{}", w[3]);
        assert!(
            w[3].contains("active since epoch 364032 (now 400000)"),
            "{}",
            w[3]
        );
        assert!(
            w[4].contains("activates at epoch 411392 (now 400000)"),
            "{}",
            w[4]
        );
        assert!(w[4].contains("--network mainnet"), "{}", w[4]);
    }
}

//! `keel key`, `keel manifest` and `keel trust`: thin wrappers over `keel-trust`.
//!
//! This file parses arguments, reads passwords, computes CIDs through `keel-content`, and
//! prints. Every rule lives in the `keel-trust` crate.
//!
//! Exit codes of `keel manifest verify`: 0 valid, 1 not valid (every reason printed), 2 the
//! inputs could not be used at all (returned as an error).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use keel_trust::key::{self, KeyId};
use keel_trust::{
    KdfParams, Keyring, Manifest, ManifestParams, PolicyParams, PolicySummary, PublicKey,
    RotationChanges, SecretKey, State, TrustPolicy, VerifyOptions,
};
use zeroize::Zeroizing;

/// Environment variable holding the private key password (scripts, CI).
const PASSWORD_ENV: &str = "KEEL_KEY_PASSWORD";
/// Environment variable holding the new password for `keel key change-password`.
const NEW_PASSWORD_ENV: &str = "KEEL_KEY_NEW_PASSWORD";

/// Where a password comes from: `--password-file`, else the environment, else a prompt.
#[derive(Debug, clap::Args)]
pub(crate) struct PasswordArgs {
    /// Read the password from the first line of this file (otherwise $KEEL_KEY_PASSWORD, otherwise a prompt).
    #[arg(long, value_name = "FILE")]
    password_file: Option<PathBuf>,
}

/// `keel key …`
#[derive(Debug, clap::Subcommand)]
pub(crate) enum KeyCommand {
    /// Create an Ed25519 key: NAME.key (password-encrypted, mode 0600) and NAME.pub.
    New {
        /// Key name (letters, digits, '-', '_', '.').
        name: String,
        /// Directory for the key files.
        #[arg(long, default_value = ".")]
        out: PathBuf,
        #[command(flatten)]
        password: PasswordArgs,
        /// Argon2id memory in MiB (default 64).
        #[arg(long, default_value_t = 64, value_name = "MIB")]
        kdf_memory_mib: u32,
        /// Argon2id passes (default 3).
        #[arg(long, default_value_t = 3)]
        kdf_passes: u32,
    },
    /// Print a key's name, id (fingerprint) and public key, from a .pub or .key file.
    Show {
        /// Key file (.pub or .key).
        file: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Re-encrypt a private key file under a new password.
    ChangePassword {
        /// Private key file.
        file: PathBuf,
        #[command(flatten)]
        password: PasswordArgs,
        /// Read the new password from this file (otherwise $KEEL_KEY_NEW_PASSWORD, otherwise a prompt).
        #[arg(long, value_name = "FILE")]
        new_password_file: Option<PathBuf>,
    },
}

/// `keel manifest …`
#[derive(Debug, clap::Subcommand)]
pub(crate) enum ManifestCommand {
    /// Create an unsigned manifest listing every file under DIR by CID.
    Create {
        /// Directory whose files the manifest lists.
        dir: PathBuf,
        /// Release name.
        #[arg(long)]
        name: String,
        /// Monotonic release number.
        #[arg(long)]
        version: u64,
        /// Human label for the version, e.g. 2026.12-rc1.
        #[arg(long)]
        label: Option<String>,
        /// How long the manifest stays valid (humantime: 90d, 12h).
        #[arg(long, default_value = "90d", value_parser = humantime::parse_duration)]
        expires: Duration,
        /// CID of the previous release's manifest.
        #[arg(long)]
        previous: Option<String>,
        /// Free metadata, KEY=VALUE (string values), repeatable.
        #[arg(long = "meta", value_name = "KEY=VALUE")]
        meta: Vec<String>,
        /// Output file.
        #[arg(short = 'o', long)]
        output: PathBuf,
        /// Replace the output file if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Add signatures (signing again with the same key adds nothing).
    Sign {
        /// Manifest file, updated in place.
        manifest: PathBuf,
        /// Private key file, repeatable.
        #[arg(long = "key", required = true)]
        keys: Vec<PathBuf>,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// Drop every signature and sign again (after a key rotation).
    Resign {
        /// Manifest file, updated in place.
        manifest: PathBuf,
        /// Private key file, repeatable.
        #[arg(long = "key", required = true)]
        keys: Vec<PathBuf>,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// Verify a manifest; exit 0 only if valid, else print every reason and exit 1.
    Verify {
        /// Manifest file.
        manifest: PathBuf,
        /// Pinned trust policy (root).
        #[arg(long)]
        trust: PathBuf,
        /// Rotated policies following the pinned one, in order (repeatable).
        #[arg(long = "rotation", value_name = "POLICY")]
        rotations: Vec<PathBuf>,
        /// Anti-rollback state file: refuse versions below the highest accepted, then record.
        #[arg(long)]
        state: Option<PathBuf>,
        /// Check every entry's bytes (size, SHA-256, CID) against this directory.
        #[arg(long, conflicts_with = "gateway")]
        content: Option<PathBuf>,
        /// Fetch every entry from this IPFS HTTP gateway (GET URL/ipfs/CID) and check the bytes
        /// the same way; the gateway is not trusted, the CID is recomputed locally.
        #[arg(long, value_name = "URL")]
        gateway: Option<String>,
        /// Per-entry timeout for --gateway.
        #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
        gateway_timeout: Duration,
        /// Allowed clock skew for future-dated manifests.
        #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
        clock_skew: Duration,
        /// Print a machine-readable JSON report.
        #[arg(long)]
        json: bool,
    },
}

/// `keel trust …`
#[derive(Debug, clap::Subcommand)]
pub(crate) enum TrustCommand {
    /// Create a root trust policy: M of the given public keys must sign.
    Init {
        /// M: distinct keys that must sign.
        #[arg(long)]
        threshold: u32,
        /// Public key files (.pub).
        #[arg(required = true)]
        keys: Vec<PathBuf>,
        /// Lowest acceptable manifest version.
        #[arg(long, default_value_t = 0)]
        min_version: u64,
        /// Maximum manifest age (humantime), e.g. 365d.
        #[arg(long, value_parser = humantime::parse_duration)]
        max_age: Option<Duration>,
        /// Output file.
        #[arg(short = 'o', long)]
        output: PathBuf,
    },
    /// Create the next policy (serial + 1); it must be signed by M of the old keys and M of the new.
    Rotate {
        /// The current policy.
        #[arg(long)]
        from: PathBuf,
        /// New M.
        #[arg(long)]
        threshold: u32,
        /// Public key files of the new key set.
        #[arg(required = true)]
        keys: Vec<PathBuf>,
        /// Revoke a key (key id, or a .pub/.key file), repeatable.
        #[arg(long)]
        revoke: Vec<String>,
        /// New floor for manifest versions (never lowered).
        #[arg(long, default_value_t = 0)]
        min_version: u64,
        /// Maximum manifest age (humantime); default: the current policy's. It may be
        /// shortened, never lengthened or removed.
        #[arg(long, value_parser = humantime::parse_duration)]
        max_age: Option<Duration>,
        /// Sign the new policy with these private keys right away (repeatable); what the
        /// rotation changes is shown and confirmed first.
        #[arg(long = "key")]
        sign_keys: Vec<PathBuf>,
        #[command(flatten)]
        password: PasswordArgs,
        /// Sign without asking for confirmation (the changes are still printed).
        #[arg(long)]
        yes: bool,
        /// Output file.
        #[arg(short = 'o', long)]
        output: PathBuf,
    },
    /// Add signatures to a policy, after showing what it says (a root) or what it changes (a
    /// rotation, compared with --from) and asking for confirmation.
    Sign {
        /// Policy file, updated in place.
        policy: PathBuf,
        /// The policy this rotation replaces; required to sign a rotation, so that its changes
        /// are shown and a rotation that loosens a rule is refused.
        #[arg(long, value_name = "POLICY")]
        from: Option<PathBuf>,
        /// Private key file, repeatable.
        #[arg(long = "key", required = true)]
        keys: Vec<PathBuf>,
        #[command(flatten)]
        password: PasswordArgs,
        /// Sign without asking for confirmation (what is signed is still printed).
        #[arg(long)]
        yes: bool,
    },
    /// Check a chain of policies from a pinned root and print the current one.
    Verify {
        /// Pinned root policy.
        root: PathBuf,
        /// Rotated policies in order.
        chain: Vec<PathBuf>,
        /// Anti-rollback state file (policy serial).
        #[arg(long)]
        state: Option<PathBuf>,
    },
}

pub(crate) fn run_key(cmd: KeyCommand) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    match cmd {
        KeyCommand::New {
            name,
            out: dir,
            password,
            kdf_memory_mib,
            kdf_passes,
        } => {
            let params = KdfParams {
                m_cost_kib: kdf_memory_mib.saturating_mul(1024),
                t_cost: kdf_passes,
                p_cost: 1,
            };
            let pw = read_password(
                &password,
                PASSWORD_ENV,
                &format!("Password for new key {name}: "),
                true,
            )?;
            let files = key::new_key_files(&dir, &name, pw.as_bytes(), params)?;
            writeln!(
                out,
                "created {} (private, mode 0600)",
                files.secret.display()
            )?;
            writeln!(out, "created {} (public)", files.public.display())?;
            writeln!(out, "key id {}", files.key.id)?;
        }
        KeyCommand::Show { file, json } => {
            let k = key::read_any_public_key(&file)?;
            if json {
                serde_json::to_writer_pretty(&mut out, &keel_trust::PublicKeyFile::new(&k))?;
                writeln!(out)?;
            } else {
                writeln!(out, "name        {}", k.name)?;
                writeln!(out, "key id      {}", k.id)?;
                writeln!(out, "public key  {}", hex_of(k.key.as_bytes()))?;
            }
        }
        KeyCommand::ChangePassword {
            file,
            password,
            new_password_file,
        } => {
            let enc = keel_trust::EncryptedKey::read(&file)?;
            let old = read_password(
                &password,
                PASSWORD_ENV,
                &format!("Current password for {}: ", enc.name),
                false,
            )?;
            let new_args = PasswordArgs {
                password_file: new_password_file,
            };
            let new = read_password(&new_args, NEW_PASSWORD_ENV, "New password: ", true)?;
            let k = key::change_password(&file, old.as_bytes(), new.as_bytes(), enc.kdf.params)?;
            writeln!(out, "password changed for {} ({})", k.name, k.id)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn run_manifest(cmd: ManifestCommand) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    match cmd {
        ManifestCommand::Create {
            dir,
            name,
            version,
            label,
            expires,
            previous,
            meta,
            output,
            force,
        } => {
            let opts = keel_content::ImportOptions::default();
            let mut metadata = serde_json::Map::new();
            for kv in meta {
                let (k, v) = kv
                    .split_once('=')
                    .with_context(|| format!("--meta {kv:?}: expected KEY=VALUE"))?;
                metadata.insert(k.to_owned(), serde_json::Value::String(v.to_owned()));
            }
            let bar = progress_bar("hashing");
            let mut cid_of = |p: &Path| -> Result<String, String> {
                keel_content::cid_of_file(p, &opts)
                    .map(|c| c.to_string())
                    .map_err(|e| e.to_string())
            };
            let exclude = [output.clone()];
            let entries =
                keel_trust::entries_from_dir(&dir, &exclude, &mut cid_of, &mut |done, total| {
                    bar.set_length(total as u64);
                    bar.set_position(done as u64);
                })?;
            bar.finish_and_clear();
            let count = entries.len();
            let m = Manifest::new(
                ManifestParams {
                    name,
                    version,
                    version_label: label,
                    created: SystemTime::now(),
                    valid_for: expires,
                    previous,
                    cid_profile: CID_PROFILE.to_owned(),
                    metadata,
                },
                entries,
            )?;
            m.write(&output, force)?;
            writeln!(
                out,
                "wrote {} ({count} entries, unsigned, expires {})",
                output.display(),
                m.expires
            )?;
        }
        ManifestCommand::Sign {
            manifest,
            keys,
            password,
        } => {
            let mut m = Manifest::read(&manifest)?;
            for k in open_keys(&keys, &password)? {
                let added = m.sign(&k)?;
                report_signature(&mut out, added, &k)?;
            }
            m.write(&manifest, true)?;
        }
        ManifestCommand::Resign {
            manifest,
            keys,
            password,
        } => {
            let mut m = Manifest::read(&manifest)?;
            let keys = open_keys(&keys, &password)?;
            let dropped = m.signatures.len();
            m.clear_signatures();
            for k in &keys {
                m.sign(k)?;
                writeln!(out, "signed by {} ({})", k.name(), k.id())?;
            }
            m.write(&manifest, true)?;
            writeln!(out, "dropped {dropped} old signature(s)")?;
        }
        ManifestCommand::Verify {
            manifest,
            trust,
            rotations,
            state,
            content,
            gateway,
            gateway_timeout,
            clock_skew,
            json,
        } => {
            let args = VerifyArgs {
                manifest,
                trust,
                rotations,
                state,
                content,
                gateway,
                gateway_timeout,
                clock_skew,
                json,
            };
            // Inputs that cannot be used at all exit 2, so CI can tell them from "not valid" (1).
            return match verify_cmd(&args, &mut out) {
                Ok(code) => Ok(code),
                Err(e) => {
                    writeln!(std::io::stderr(), "error: {e:#}")?;
                    Ok(ExitCode::from(2))
                }
            };
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn run_trust(cmd: TrustCommand) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    match cmd {
        TrustCommand::Init {
            threshold,
            keys,
            min_version,
            max_age,
            output,
        } => {
            let keys = read_public_keys(&keys)?;
            let p = TrustPolicy::new_root(
                &keys,
                &PolicyParams {
                    threshold,
                    min_version,
                    max_age,
                    now: SystemTime::now(),
                },
            )?;
            p.write(&output, false)?;
            writeln!(
                out,
                "wrote {}: serial 1, {threshold} of {} keys",
                output.display(),
                keys.len()
            )?;
            writeln!(
                out,
                "pin this file (commit it, or check its digest {}) out of band",
                hex_of(&p.digest()?)
            )?;
        }
        TrustCommand::Rotate {
            from,
            threshold,
            keys,
            revoke,
            min_version,
            max_age,
            sign_keys,
            password,
            yes,
            output,
        } => {
            let current = TrustPolicy::read(&from)?;
            let keys = read_public_keys(&keys)?;
            let mut revoked = Vec::new();
            for r in &revoke {
                let id = match r.parse::<KeyId>() {
                    Ok(id) => id,
                    Err(_) => {
                        key::read_any_public_key(Path::new(r))
                            .with_context(|| format!("--revoke {r}: not a key id or key file"))?
                            .id
                    }
                };
                revoked.push(id);
            }
            let max_age = max_age.or(current.max_age_seconds.map(Duration::from_secs));
            let mut next = current.successor(
                &keys,
                &revoked,
                &PolicyParams {
                    threshold,
                    min_version,
                    max_age,
                    now: SystemTime::now(),
                },
            )?;
            write!(out, "{}", RotationChanges::between(&current, &next)?)?;
            if !sign_keys.is_empty() {
                confirm(
                    yes,
                    &format!(
                        "Sign serial {} with {} key(s)?",
                        next.serial,
                        sign_keys.len()
                    ),
                )?;
            }
            for k in open_keys(&sign_keys, &password)? {
                next.sign(&k)?;
                writeln!(out, "signed by {} ({})", k.name(), k.id())?;
            }
            next.write(&output, false)?;
            writeln!(
                out,
                "wrote {}: serial {}, {threshold} of {} keys",
                output.display(),
                next.serial,
                keys.len()
            )?;
            match keel_trust::accept_rotation(&current, &next) {
                Ok(_) => writeln!(out, "rotation is fully signed")?,
                Err(e) => writeln!(out, "not yet accepted: {e}")?,
            }
        }
        TrustCommand::Sign {
            policy,
            from,
            keys,
            password,
            yes,
        } => {
            let mut p = TrustPolicy::read(&policy)
                .with_context(|| format!("trust policy {}", policy.display()))?;
            match (&from, &p.previous) {
                (Some(from), _) => {
                    let current = TrustPolicy::read(from)
                        .with_context(|| format!("trust policy {}", from.display()))?;
                    let changes = RotationChanges::between(&current, &p)?;
                    write!(out, "{changes}")?;
                    if !changes.refused.is_empty() {
                        bail!(
                            "not signing {}: as a successor of {} it is refused whatever its signatures: {}",
                            policy.display(),
                            from.display(),
                            changes.refused.join("; ")
                        );
                    }
                }
                (None, Some(_)) => bail!(
                    "{} is a rotation (serial {}); pass --from with the policy it replaces, so \
                     that what it changes is shown before you sign",
                    policy.display(),
                    p.serial
                ),
                (None, None) => write!(out, "{}", PolicySummary::of(&p))?,
            }
            confirm(
                yes,
                &format!(
                    "Sign {} (serial {}) with {} key(s)?",
                    policy.display(),
                    p.serial,
                    keys.len()
                ),
            )?;
            for k in open_keys(&keys, &password)? {
                let added = p.sign(&k)?;
                report_signature(&mut out, added, &k)?;
            }
            p.write(&policy, true)?;
        }
        TrustCommand::Verify { root, chain, state } => {
            let ring = load_chain(&root, &chain)?;
            if let Some(path) = &state {
                State::update(path, |s| {
                    s.check_policy(ring.policy.serial)?;
                    s.policy_serial = s.policy_serial.max(ring.policy.serial);
                    Ok(())
                })?;
            }
            let p = &ring.policy;
            writeln!(
                out,
                "policy chain ok: serial {}, threshold {} of {}",
                p.serial,
                p.threshold,
                p.keys.len()
            )?;
            for k in &p.keys {
                writeln!(out, "  {} {}", k.key_id, k.name)?;
            }
            if !p.revoked.is_empty() {
                writeln!(out, "revoked: {}", p.revoked.join(", "))?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

struct VerifyArgs {
    manifest: PathBuf,
    trust: PathBuf,
    rotations: Vec<PathBuf>,
    state: Option<PathBuf>,
    content: Option<PathBuf>,
    gateway: Option<String>,
    gateway_timeout: Duration,
    clock_skew: Duration,
    json: bool,
}

fn verify_cmd(args: &VerifyArgs, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    let VerifyArgs {
        manifest,
        trust,
        rotations,
        state,
        content,
        gateway,
        gateway_timeout,
        clock_skew,
        json,
    } = args;
    let (gateway_timeout, clock_skew, json) = (*gateway_timeout, *clock_skew, *json);
    let ring = load_chain(trust, rotations)?;
    // A rolled-back policy fails before any content is read; the state is read again under
    // its lock when the result is recorded.
    if let Some(p) = state {
        State::load(p)?.check_policy(ring.policy.serial)?;
    }
    let opts = VerifyOptions {
        now: SystemTime::now(),
        max_clock_skew: clock_skew,
    };
    let (m, mut report) = keel_trust::verify_manifest_file(manifest, &ring, &opts);
    if let Some(m) = &m
        && (content.is_some() || gateway.is_some())
    {
        // Signatures first: a manifest that is not authenticated names paths and sizes that
        // anyone could have chosen, so none of them is read and nothing is fetched.
        if !report.authenticated() {
            let what = if gateway.is_some() {
                "nothing was fetched from the gateway"
            } else {
                "no file under the content directory was read"
            };
            report.warnings.push(
                keel_trust::Problem::ContentNotChecked {
                    reason: format!(
                        "the manifest is not signed by the threshold of trusted keys or breaks its schema (see the errors above), so {what}"
                    ),
                }
                .into(),
            );
        } else if m.cid_profile != CID_PROFILE {
            report.push(keel_trust::Problem::InvalidManifest {
                reason: format!(
                    "cid_profile {:?} is not {CID_PROFILE:?}, the only profile this keel checks content with",
                    m.cid_profile
                ),
            });
        } else {
            let import = keel_content::ImportOptions::default();
            let bar = if json {
                indicatif::ProgressBar::hidden()
            } else {
                progress_bar("checking")
            };
            let mut cid_of = |p: &Path| -> Result<String, String> {
                keel_content::cid_of_file(p, &import)
                    .map(|c| c.to_string())
                    .map_err(|e| e.to_string())
            };
            let mut progress = |done: usize, total: usize| {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
            };
            let problems = match (content, gateway) {
                (Some(dir), _) => keel_trust::check_content(m, dir, &mut cid_of, &mut progress),
                (None, Some(url)) => {
                    check_via_gateway(m, url, gateway_timeout, &mut cid_of, &mut progress)?
                }
                (None, None) => Vec::new(),
            };
            bar.finish_and_clear();
            report.extend(problems);
        }
    }
    if let Some(path) = state {
        State::update(path, |s| {
            s.check_report(&mut report);
            if report.valid {
                s.record(&report);
            }
            Ok(())
        })?;
    }
    if json {
        serde_json::to_writer_pretty(&mut *out, &report)?;
        writeln!(out)?;
    } else {
        print_report(out, manifest, &report)?;
    }
    Ok(if report.valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The content importer profile used for manifest CIDs (`ImportOptions::default()`).
const CID_PROFILE: &str = "unixfs-v0-2015";

/// Fetches each entry from an untrusted gateway into a temporary file (at most size + 1 bytes,
/// so a hostile gateway cannot fill the disk) and checks the bytes like `--content` does.
fn check_via_gateway(
    m: &Manifest,
    url: &str,
    timeout: Duration,
    cid_of: &mut keel_trust::CidFn<'_>,
    progress: &mut dyn FnMut(usize, usize),
) -> anyhow::Result<Vec<keel_trust::Problem>> {
    use keel_trust::Problem;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime for --gateway")?;
    // The timeout covers the whole exchange of one entry: connect, headers and body.
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .context("cannot build the HTTP client for --gateway")?;
    let base = url.trim_end_matches('/');
    let tmp = tempfile::tempdir().context("cannot create a temporary directory")?;
    let file = tmp.path().join("entry");
    let mut out = Vec::new();
    let total = m.entries.len();
    for (i, e) in m.entries.iter().enumerate() {
        progress(i + 1, total);
        let entry_url = format!("{base}/ipfs/{}", e.cid);
        let limit = e.size.saturating_add(1);
        match rt.block_on(fetch_bounded(&client, &entry_url, limit, &file)) {
            Ok(()) => out.extend(keel_trust::check_entry_file(e, &file, cid_of)),
            Err(reason) => out.push(Problem::EntryUnreadable {
                path: e.path.clone(),
                reason,
            }),
        }
    }
    Ok(out)
}

/// `GET url` into `file`, keeping at most `limit` bytes of the body: enough to tell that a
/// body is too long without storing what a hostile gateway sends beyond it.
async fn fetch_bounded(
    client: &reqwest::Client,
    url: &str,
    limit: u64,
    file: &Path,
) -> Result<(), String> {
    let mut resp = client
        .get(url)
        .send()
        .await
        .map_err(|err| format!("gateway: {}", error_chain(&err)))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(format!("gateway answered {status} for {url}"));
    }
    let mut f = std::fs::File::create(file)
        .map_err(|err| format!("cannot write {}: {err}", file.display()))?;
    let mut written: u64 = 0;
    while written < limit {
        let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|err| format!("gateway: {}", error_chain(&err)))?
        else {
            break;
        };
        let room = usize::try_from(limit - written).unwrap_or(usize::MAX);
        let keep = &chunk[..chunk.len().min(room)];
        f.write_all(keep)
            .map_err(|err| format!("cannot write {}: {err}", file.display()))?;
        written += keep.len() as u64;
    }
    Ok(())
}

/// An error and its sources, joined: reqwest's own message alone hides the cause (timeout,
/// connection refused, …).
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn progress_bar(what: &'static str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(0);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} files ({eta})")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what);
    bar
}

fn read_public_keys(paths: &[PathBuf]) -> anyhow::Result<Vec<PublicKey>> {
    paths
        .iter()
        .map(|p| key::read_any_public_key(p).with_context(|| format!("public key {}", p.display())))
        .collect()
}

fn load_chain(root: &Path, chain: &[PathBuf]) -> anyhow::Result<Keyring> {
    let root =
        TrustPolicy::read(root).with_context(|| format!("trust policy {}", root.display()))?;
    let chain = chain
        .iter()
        .map(|p| TrustPolicy::read(p).with_context(|| format!("trust policy {}", p.display())))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(keel_trust::verify_chain(&root, &chain)?)
}

/// Asks `question` on the terminal (stderr) and reads the answer from stdin, unless `yes`.
/// Only "y" or "yes" goes on; anything else, or no answer at all, refuses.
fn confirm(yes: bool, question: &str) -> anyhow::Result<()> {
    if yes {
        return Ok(());
    }
    let mut err = std::io::stderr().lock();
    write!(err, "{question} [y/N] ")?;
    err.flush()?;
    let mut line = String::new();
    let n = std::io::stdin()
        .read_line(&mut line)
        .context("cannot read the answer from stdin")?;
    if n == 0 {
        bail!(
            "not signed: no answer (stdin is closed); review what is printed above and pass --yes to sign without asking"
        );
    }
    match line.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" => Ok(()),
        _ => bail!("not signed: declined"),
    }
}

/// One line per key that signed (or had already signed) a document.
fn report_signature(out: &mut impl Write, added: bool, k: &SecretKey) -> std::io::Result<()> {
    let verb = if added {
        "signed by"
    } else {
        "already signed by"
    };
    writeln!(out, "{verb} {} ({})", k.name(), k.id())
}

/// Opens private keys; one password is asked once and tried on every key.
fn open_keys(paths: &[PathBuf], password: &PasswordArgs) -> anyhow::Result<Vec<SecretKey>> {
    let mut keys = Vec::new();
    let mut cached: Option<Zeroizing<String>> = None;
    for p in paths {
        let enc =
            keel_trust::EncryptedKey::read(p).with_context(|| format!("key {}", p.display()))?;
        let pw = match &cached {
            Some(pw) => pw.clone(),
            None => read_password(
                password,
                PASSWORD_ENV,
                &format!("Password for {} ({}): ", enc.name, enc.key_id),
                false,
            )?,
        };
        match enc.decrypt(pw.as_bytes()) {
            Ok(k) => {
                cached = Some(pw);
                keys.push(k);
            }
            Err(keel_trust::Error::WrongPassword { .. })
                if cached.is_some() && password.password_file.is_none() =>
            {
                let pw = read_password(
                    password,
                    PASSWORD_ENV,
                    &format!("Password for {} ({}): ", enc.name, enc.key_id),
                    false,
                )?;
                keys.push(
                    enc.decrypt(pw.as_bytes())
                        .with_context(|| format!("key {}", p.display()))?,
                );
            }
            Err(e) => return Err(anyhow::Error::new(e).context(format!("key {}", p.display()))),
        }
    }
    Ok(keys)
}

/// A password from `--password-file` (refused when group or others may read it), else `env`,
/// else a prompt. Every copy is wiped from memory when dropped.
fn read_password(
    args: &PasswordArgs,
    env: &str,
    prompt: &str,
    confirm: bool,
) -> anyhow::Result<Zeroizing<String>> {
    if let Some(file) = &args.password_file {
        return Ok(key::read_password_file(file)?);
    }
    if let Ok(pw) = std::env::var(env) {
        let pw = Zeroizing::new(pw);
        if !pw.is_empty() {
            return Ok(pw);
        }
    }
    let pw = Zeroizing::new(rpassword::prompt_password(prompt).with_context(|| {
        format!("cannot prompt for a password (no terminal?); use --password-file or ${env}")
    })?);
    if confirm {
        let again = Zeroizing::new(rpassword::prompt_password("Repeat: ")?);
        if *again != *pw {
            bail!("the two passwords differ");
        }
    }
    if pw.is_empty() {
        bail!("the password is empty");
    }
    Ok(pw)
}

fn print_report(out: &mut impl Write, path: &Path, r: &keel_trust::Report) -> std::io::Result<()> {
    let name = r.name.as_deref().unwrap_or("?");
    let version = r
        .version
        .map(|v| v.to_string())
        .unwrap_or_else(|| "?".to_owned());
    writeln!(
        out,
        "{}: {} — {name} version {version}{}",
        path.display(),
        if r.valid { "VALID" } else { "NOT VALID" },
        r.version_label
            .as_deref()
            .map(|l| format!(" ({l})"))
            .unwrap_or_default()
    )?;
    writeln!(
        out,
        "signatures: {} valid of {} required (policy serial {})",
        r.valid_signatures,
        r.threshold,
        r.policy_serial.unwrap_or(0)
    )?;
    for s in &r.signatures {
        writeln!(
            out,
            "  {:<12} {} {}",
            format!("{:?}", s.status).to_lowercase(),
            s.key_id,
            s.name.as_deref().unwrap_or("")
        )?;
    }
    for p in &r.problems {
        writeln!(out, "error: {}", p.message)?;
    }
    for w in &r.warnings {
        writeln!(out, "warning: {}", w.message)?;
    }
    Ok(())
}

//! `deskport import --dry-run`: what an import would do, row by row, without sending a
//! single write. The same reader, mapping and validator as the real run; with credentials,
//! read-only lookups tell create from update from already-exists.

use super::matching::{find_holder, foreign_holder, Found, Unmatched};
use super::{ImportConfig, ImportError, Mode};
use crate::error::Error;
use crate::input;
use crate::output::describe;
use crate::pipeline::spawn_checked;
use crate::platform::{CallError, Target};
use serde::Serialize;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// A row's lookup answer, filled in by a concurrent task.
type LookupSlot = Mutex<Option<Result<Option<String>, CallError>>>;

/// A row's search by email or phone (`--match`), filled in by a concurrent task.
type MatchSlot = Mutex<Option<Result<Option<Found>, Unmatched>>>;

/// What a dry run predicts.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DryRunReport {
    /// Rows read.
    pub rows_read: u64,
    /// Rows that would be created.
    pub create: u64,
    /// Rows that would update an existing customer.
    pub update: u64,
    /// Rows (create mode) whose customer exists already and would be left alone.
    pub exists: u64,
    /// Rows whose email or phone finds a customer without an external id (`--match`): it
    /// would be given the row's and reported existing (create) or updated (upsert).
    pub link: u64,
    /// Rows the platform would refuse (update mode: no such customer; `--match`: an
    /// address held by more than one customer or by one with another external id).
    pub fail: u64,
    /// Rows the validator refuses.
    pub reject: u64,
    /// Rows whose fate depends on a lookup that was not made (no credentials).
    pub undecided: u64,
    /// Whether lookups were made.
    pub looked_up: bool,
    /// The per-row plan.
    pub file: PathBuf,
    /// The first requests that would be sent, secrets redacted.
    pub first_requests: Vec<String>,
    /// How the run would spend its calls (see [`super::plan`]).
    pub call_plan: String,
}

/// Predicts the import row by row; with `lookups`, asks the platform (reads only).
pub async fn run<T: Target>(
    config: &ImportConfig,
    target: Arc<T>,
    lookups: bool,
) -> Result<DryRunReport, ImportError> {
    let opened = input::open(&config.input).map_err(Error::from)?;
    crate::pipeline::check_columns(&config.mapping, &opened.reader.columns(), &config.rules)?;
    std::fs::create_dir_all(&config.journal_dir).map_err(|source| {
        Error::Output(crate::output::OutputError {
            path: config.journal_dir.clone(),
            source,
        })
    })?;
    let path = config.journal_dir.join("dry-run.csv");
    let out_err = |source| {
        ImportError::Run(Error::Output(crate::output::OutputError {
            path: path.clone(),
            source,
        }))
    };
    let mut out = csv::Writer::from_writer(std::io::BufWriter::new(
        std::fs::File::create(&path).map_err(out_err)?,
    ));
    out.write_record(["line", "external_id", "action", "detail"])
        .map_err(|e| out_err(std::io::Error::other(e)))?;
    let (pipeline, mut rx) = spawn_checked(
        opened.reader,
        config.mapping.clone(),
        config.rules.clone(),
        config.threads,
        256,
    );
    let rows = match &config.input.path {
        crate::input::InputPath::File(p) => {
            super::start::fingerprint(p).map_or(0, |f| f.line_feeds.saturating_sub(1))
        }
        crate::input::InputPath::Stdin => 0,
    };
    let (known, call_plan) = if lookups {
        let (survey, plan) =
            super::plan::survey(target.as_ref(), config.mode, rows, None, false).await?;
        (survey.map(|s| s.existing), plan)
    } else {
        (
            None,
            "plan: not known without the platform (give credentials and a base URL)".into(),
        )
    };
    let mut report = DryRunReport {
        looked_up: lookups,
        file: path.clone(),
        call_plan,
        ..DryRunReport::default()
    };
    while let Some(batch) = rx.recv().await {
        let batch = batch?;
        let found: Vec<LookupSlot> = batch.rows.iter().map(|_| Mutex::new(None)).collect();
        if let Some(known) = &known {
            for (row, slot) in batch.rows.iter().zip(&found) {
                if let Some(c) = row.customer.as_ref().filter(|_| row.is_clean()) {
                    let id = known.get(&c.external_id).cloned();
                    *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(Ok(id));
                }
            }
        } else if lookups {
            let work = batch
                .rows
                .iter()
                .zip(&found)
                .filter(|(r, _)| r.is_clean() && r.customer.is_some());
            let t = target.as_ref();
            crate::platform::transport::for_each_bounded(
                work,
                config.max_concurrency,
                |(row, slot)| async move {
                    if let Some(c) = &row.customer {
                        let result = t.lookup(c).await;
                        *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(result);
                    }
                },
            )
            .await;
        }
        // Rows their external id does not find are searched by email or phone (`--match`).
        let matched: Vec<MatchSlot> = batch.rows.iter().map(|_| Mutex::new(None)).collect();
        if lookups && !config.match_keys.is_empty() && config.mode != Mode::Update {
            let t = target.as_ref();
            let keys = &config.match_keys;
            let unfound =
                batch
                    .rows
                    .iter()
                    .zip(found.iter().zip(&matched))
                    .filter(|(_, (slot, _))| {
                        matches!(
                            *slot.lock().unwrap_or_else(|e| e.into_inner()),
                            Some(Ok(None))
                        )
                    });
            crate::platform::transport::for_each_bounded(
                unfound,
                config.max_concurrency,
                |(row, (_, out))| async move {
                    if let Some(c) = &row.customer {
                        let result = find_holder(t, keys, c).await;
                        *out.lock().unwrap_or_else(|e| e.into_inner()) = Some(result);
                    }
                },
            )
            .await;
        }
        for ((row, slot), matched) in batch.rows.iter().zip(found).zip(matched) {
            report.rows_read += 1;
            let id = row.customer.as_ref().map_or("", |c| c.external_id.as_str());
            let (action, detail) = if !row.is_clean() {
                report.reject += 1;
                let text: Vec<String> = row
                    .issues
                    .iter()
                    .filter(|i| i.is_error())
                    .map(|i| format!("{}: {}", i.code, describe(i)))
                    .collect();
                ("reject", text.join(" | "))
            } else {
                let lookup = slot.into_inner().unwrap_or_else(|e| e.into_inner());
                let matched = matched.into_inner().unwrap_or_else(|e| e.into_inner());
                let linked = if config.mode == Mode::Create {
                    "left alone"
                } else {
                    "updated"
                };
                match (config.mode, lookup) {
                    (_, Some(Err(e))) if e.stops_run() => {
                        return Err(ImportError::Usage(e.to_string()))
                    }
                    (_, Some(Ok(None))) if matched.is_some() => {
                        match matched {
                            Some(Err(Unmatched::Call(e))) if e.stops_run() => {
                                return Err(ImportError::Usage(e.to_string()))
                            }
                            Some(Err(Unmatched::Call(e))) => {
                                report.undecided += 1;
                                ("unknown", format!("search by email or phone failed: {e}"))
                            }
                            Some(Err(Unmatched::Conflict(why))) => {
                                report.fail += 1;
                                ("fail", why)
                            }
                            Some(Ok(Some(found))) => {
                                let foreign = row
                                    .customer
                                    .as_ref()
                                    .and_then(|c| foreign_holder(c, &found));
                                let (key, value, holder) = found;
                                let pid = &holder.platform_id;
                                let key = key.name();
                                match (foreign, holder.external_id) {
                                    (Some(why), _) => {
                                        report.fail += 1;
                                        ("fail", why)
                                    }
                                    (None, None) => {
                                        report.link += 1;
                                        let how = format!("customer {pid} holds the {key} {value} and has no external id: it would be given this one and {linked}");
                                        ("link", how)
                                    }
                                    // It holds this row's external id already (a lookup missed it).
                                    (None, Some(_)) if config.mode == Mode::Create => {
                                        report.exists += 1;
                                        ("exists", format!("customer {pid}, found by {key} {value}; left alone"))
                                    }
                                    (None, Some(_)) => {
                                        report.update += 1;
                                        (
                                            "update",
                                            format!("customer {pid}, found by {key} {value}"),
                                        )
                                    }
                                }
                            }
                            _ => {
                                report.create += 1;
                                ("create", "no customer holds its emails or phones".into())
                            }
                        }
                    }
                    (_, Some(Err(e))) => {
                        report.undecided += 1;
                        ("unknown", format!("lookup failed: {e}"))
                    }
                    (Mode::Create, Some(Ok(Some(pid)))) => {
                        report.exists += 1;
                        ("exists", format!("customer {pid} exists; left alone"))
                    }
                    (Mode::Upsert | Mode::Update, Some(Ok(Some(pid)))) => {
                        report.update += 1;
                        ("update", format!("customer {pid}"))
                    }
                    (Mode::Create | Mode::Upsert, Some(Ok(None))) | (Mode::Create, None) => {
                        report.create += 1;
                        if report.first_requests.len() < 3 {
                            if let Some(c) = &row.customer {
                                report.first_requests.push(target.describe_create(c));
                            }
                        }
                        ("create", String::new())
                    }
                    (Mode::Update, Some(Ok(None))) => {
                        report.fail += 1;
                        (
                            "fail",
                            "no customer with this external id (update mode never creates)".into(),
                        )
                    }
                    (Mode::Upsert, None) => {
                        report.undecided += 1;
                        ("create_or_update", "no credentials: not looked up".into())
                    }
                    (Mode::Update, None) => {
                        report.undecided += 1;
                        ("update_if_found", "no credentials: not looked up".into())
                    }
                }
            };
            out.write_record([
                row.raw.line.to_string().as_str(),
                id,
                action,
                detail.as_str(),
            ])
            .map_err(|e| out_err(std::io::Error::other(e)))?;
        }
    }
    pipeline.join().ok();
    out.flush().map_err(out_err)?;
    let mut inner = out
        .into_inner()
        .map_err(|e| out_err(std::io::Error::other(e.to_string())))?;
    inner.flush().map_err(out_err)?;
    Ok(report)
}

impl DryRunReport {
    /// The text summary.
    pub fn summary(&self) -> String {
        let mut s = String::from("dry run: nothing was sent\n");
        for r in &self.first_requests {
            s.push_str(r);
        }
        s.push_str(&format!(
            "  rows read   {:>9}\n  create      {:>9}\n  update      {:>9}\n  exists      {:>9}\n",
            self.rows_read, self.create, self.update, self.exists
        ));
        if self.link > 0 {
            s.push_str(&format!("  link        {:>9}\n", self.link));
        }
        s.push_str(&format!(
            "  fail        {:>9}\n  reject      {:>9}\n",
            self.fail, self.reject
        ));
        if self.undecided > 0 {
            s.push_str(&format!(
                "  undecided   {:>9}   ({})\n",
                self.undecided,
                if self.looked_up {
                    "lookups failed"
                } else {
                    "give credentials for lookups"
                }
            ));
        }
        s.push_str(&format!("{}\n", self.call_plan));
        s.push_str(&format!("row by row: {}\n", self.file.display()));
        s
    }
}

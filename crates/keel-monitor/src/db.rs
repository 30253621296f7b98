//! Persistence: alert state, history, silences, uptime, incidents, SLO minutes and the disk
//! action audit log, in an embedded SQLite database under the data directory (sqlx, WAL
//! journal). Migrations are embedded and run at start; every write of one evaluation round
//! is one transaction.

use std::borrow::Cow;
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sqlx::Row as _;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::alerts::{Alert, AlertState, HistoryEvent, Silence};
use crate::clock::Millis;
use crate::error::MonitorError;

const MIGRATIONS: &[(i64, &str, &str)] = &[(
    1,
    "monitor state",
    "CREATE TABLE alerts (id TEXT PRIMARY KEY, state TEXT NOT NULL, body TEXT NOT NULL, updated_at INTEGER NOT NULL);
     CREATE TABLE alert_history (id INTEGER PRIMARY KEY AUTOINCREMENT, alert TEXT NOT NULL, rule TEXT NOT NULL, at INTEGER NOT NULL, kind TEXT NOT NULL, detail TEXT NOT NULL);
     CREATE INDEX alert_history_at ON alert_history (at);
     CREATE TABLE silences (id TEXT PRIMARY KEY, body TEXT NOT NULL, ends_at INTEGER NOT NULL);
     CREATE TABLE uptime (component TEXT NOT NULL, day INTEGER NOT NULL, up_ms INTEGER NOT NULL, total_ms INTEGER NOT NULL, PRIMARY KEY (component, day));
     CREATE TABLE incidents (id INTEGER PRIMARY KEY AUTOINCREMENT, title TEXT NOT NULL, impact TEXT NOT NULL, status TEXT NOT NULL, components TEXT NOT NULL, created_at INTEGER NOT NULL, resolved_at INTEGER);
     CREATE TABLE incident_updates (id INTEGER PRIMARY KEY AUTOINCREMENT, incident INTEGER NOT NULL REFERENCES incidents (id), at INTEGER NOT NULL, status TEXT NOT NULL, message TEXT NOT NULL);
     CREATE TABLE slo_minutes (slo TEXT NOT NULL, minute INTEGER NOT NULL, good REAL NOT NULL, total REAL NOT NULL, PRIMARY KEY (slo, minute));
     CREATE TABLE audit (id INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER NOT NULL, action TEXT NOT NULL, detail TEXT NOT NULL, outcome TEXT NOT NULL);",
)];

fn migrator() -> Migrator {
    let migrations: Vec<Migration> = MIGRATIONS
        .iter()
        .map(|(v, d, sql)| {
            Migration::new(
                *v,
                Cow::Borrowed(*d),
                MigrationType::Simple,
                sqlx::SqlStr::from_static(sql),
                false,
            )
        })
        .collect();
    Migrator {
        migrations: Cow::Owned(migrations),
        ..Migrator::DEFAULT
    }
}

/// An incident shown on the status page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    /// Id.
    pub id: i64,
    /// Title.
    pub title: String,
    /// `minor`, `major`, `critical` or `maintenance`.
    pub impact: String,
    /// `investigating`, `identified`, `monitoring` or `resolved`.
    pub status: String,
    /// Components affected.
    pub components: Vec<String>,
    /// Opened.
    pub created_at: Millis,
    /// Resolved.
    pub resolved_at: Option<Millis>,
    /// Timeline, oldest first.
    pub updates: Vec<IncidentUpdate>,
}

/// One timeline entry of an incident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncidentUpdate {
    /// When.
    pub at: Millis,
    /// Status at that point.
    pub status: String,
    /// What was said.
    pub message: String,
}

/// Uptime of one component on one day.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DayUptime {
    /// Days since the epoch (UTC).
    pub day: i64,
    /// Time up.
    pub up_ms: i64,
    /// Time observed.
    pub total_ms: i64,
}

/// The database.
#[derive(Debug, Clone)]
pub struct Db {
    pool: SqlitePool,
}

fn db_err(what: &'static str) -> impl FnOnce(sqlx::Error) -> MonitorError {
    move |source| MonitorError::Db { what, source }
}

/// Everything one evaluation round writes.
#[derive(Debug, Default)]
pub struct Round<'a> {
    /// Alerts that changed (firing, acknowledged, escalated) or resolved.
    pub alerts: &'a [Alert],
    /// History to append.
    pub history: &'a [HistoryEvent],
    /// Uptime to add: (component, day, up ms, total ms).
    pub uptime: &'a [(String, i64, i64, i64)],
    /// SLO minutes to store: (slo, minute, good, total).
    pub slo: &'a [(String, i64, f64, f64)],
}

impl Db {
    /// Opens (creating) the database at `path` and runs the migrations.
    pub async fn open(path: &Path) -> Result<Self, MonitorError> {
        let opts = SqliteConnectOptions::from_str("sqlite://")
            .map_err(db_err("configure the database"))?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts)
            .await
            .map_err(|source| MonitorError::DbOpen {
                path: path.display().to_string(),
                source,
            })?;
        migrator()
            .run(&pool)
            .await
            .map_err(|source| MonitorError::Migrate {
                path: path.display().to_string(),
                source,
            })?;
        Ok(Self { pool })
    }

    /// Writes one evaluation round atomically.
    pub async fn write(&self, r: Round<'_>) -> Result<(), MonitorError> {
        if r.alerts.is_empty() && r.history.is_empty() && r.uptime.is_empty() && r.slo.is_empty() {
            return Ok(());
        }
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(db_err("begin a transaction"))?;
        for a in r.alerts {
            if a.state == AlertState::Resolved {
                sqlx::query("DELETE FROM alerts WHERE id = ?")
                    .bind(&a.id)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err("delete a resolved alert"))?;
            } else {
                let body = serde_json::to_string(a).unwrap_or_default();
                sqlx::query(
                    "INSERT INTO alerts (id, state, body, updated_at) VALUES (?, ?, ?, ?)
                     ON CONFLICT (id) DO UPDATE SET state = excluded.state, body = excluded.body, updated_at = excluded.updated_at",
                )
                .bind(&a.id)
                .bind(a.state.as_str())
                .bind(body)
                .bind(a.fired_at.unwrap_or(a.since))
                .execute(&mut *tx)
                .await
                .map_err(db_err("save an alert"))?;
            }
        }
        for h in r.history {
            sqlx::query(
                "INSERT INTO alert_history (alert, rule, at, kind, detail) VALUES (?, ?, ?, ?, ?)",
            )
            .bind(&h.alert)
            .bind(&h.rule)
            .bind(h.at)
            .bind(&h.kind)
            .bind(&h.detail)
            .execute(&mut *tx)
            .await
            .map_err(db_err("append alert history"))?;
        }
        for (c, day, up, total) in r.uptime {
            sqlx::query(
                "INSERT INTO uptime (component, day, up_ms, total_ms) VALUES (?, ?, ?, ?)
                 ON CONFLICT (component, day) DO UPDATE SET up_ms = up_ms + excluded.up_ms, total_ms = total_ms + excluded.total_ms",
            )
            .bind(c)
            .bind(day)
            .bind(up)
            .bind(total)
            .execute(&mut *tx)
            .await
            .map_err(db_err("add uptime"))?;
        }
        for (slo, minute, good, total) in r.slo {
            sqlx::query(
                "INSERT INTO slo_minutes (slo, minute, good, total) VALUES (?, ?, ?, ?)
                 ON CONFLICT (slo, minute) DO UPDATE SET good = excluded.good, total = excluded.total",
            )
            .bind(slo)
            .bind(minute)
            .bind(good)
            .bind(total)
            .execute(&mut *tx)
            .await
            .map_err(db_err("save SLO minutes"))?;
        }
        tx.commit().await.map_err(db_err("commit"))
    }

    /// Alerts that were firing (or pending notification) when keel stopped.
    pub async fn alerts(&self) -> Result<Vec<Alert>, MonitorError> {
        let rows = sqlx::query("SELECT body FROM alerts")
            .fetch_all(&self.pool)
            .await
            .map_err(db_err("load alerts"))?;
        Ok(rows
            .iter()
            .filter_map(|r| serde_json::from_str(r.get::<&str, _>(0)).ok())
            .collect())
    }

    /// The newest `limit` history events, newest first.
    pub async fn history(&self, limit: i64) -> Result<Vec<HistoryEvent>, MonitorError> {
        let rows = sqlx::query(
            "SELECT alert, rule, at, kind, detail FROM alert_history ORDER BY id DESC LIMIT ?",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err("load alert history"))?;
        Ok(rows
            .iter()
            .map(|r| HistoryEvent {
                alert: r.get(0),
                rule: r.get(1),
                at: r.get(2),
                kind: r.get(3),
                detail: r.get(4),
            })
            .collect())
    }

    /// Saves (inserts or updates) a silence.
    pub async fn save_silence(&self, s: &Silence) -> Result<(), MonitorError> {
        sqlx::query(
            "INSERT INTO silences (id, body, ends_at) VALUES (?, ?, ?)
             ON CONFLICT (id) DO UPDATE SET body = excluded.body, ends_at = excluded.ends_at",
        )
        .bind(&s.id)
        .bind(serde_json::to_string(s).unwrap_or_default())
        .bind(s.ends_at)
        .execute(&self.pool)
        .await
        .map_err(db_err("save a silence"))?;
        Ok(())
    }

    /// Silences that have not ended by `now`.
    pub async fn silences(&self, now: Millis) -> Result<Vec<Silence>, MonitorError> {
        let rows = sqlx::query("SELECT body FROM silences WHERE ends_at > ?")
            .bind(now)
            .fetch_all(&self.pool)
            .await
            .map_err(db_err("load silences"))?;
        Ok(rows
            .iter()
            .filter_map(|r| serde_json::from_str(r.get::<&str, _>(0)).ok())
            .collect())
    }

    /// Uptime of `component` from day `since` on.
    pub async fn uptime(
        &self,
        component: &str,
        since: i64,
    ) -> Result<Vec<DayUptime>, MonitorError> {
        let rows = sqlx::query(
            "SELECT day, up_ms, total_ms FROM uptime WHERE component = ? AND day >= ? ORDER BY day",
        )
        .bind(component)
        .bind(since)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err("load uptime"))?;
        Ok(rows
            .iter()
            .map(|r| DayUptime {
                day: r.get(0),
                up_ms: r.get(1),
                total_ms: r.get(2),
            })
            .collect())
    }

    /// Opens an incident with its first timeline entry; returns it.
    pub async fn open_incident(
        &self,
        title: &str,
        impact: &str,
        components: &[String],
        message: &str,
        at: Millis,
    ) -> Result<Incident, MonitorError> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(db_err("begin a transaction"))?;
        let id: i64 = sqlx::query(
            "INSERT INTO incidents (title, impact, status, components, created_at) VALUES (?, ?, 'investigating', ?, ?) RETURNING id",
        )
        .bind(title)
        .bind(impact)
        .bind(serde_json::to_string(components).unwrap_or_default())
        .bind(at)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_err("open an incident"))?
        .get(0);
        sqlx::query("INSERT INTO incident_updates (incident, at, status, message) VALUES (?, ?, 'investigating', ?)")
            .bind(id)
            .bind(at)
            .bind(message)
            .execute(&mut *tx)
            .await
            .map_err(db_err("add an incident update"))?;
        tx.commit().await.map_err(db_err("commit"))?;
        self.incident(id).await?.ok_or(MonitorError::NoIncident(id))
    }

    /// Adds a timeline entry; `resolved` closes the incident.
    pub async fn update_incident(
        &self,
        id: i64,
        status: &str,
        message: &str,
        at: Millis,
    ) -> Result<Incident, MonitorError> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(db_err("begin a transaction"))?;
        let done = sqlx::query("UPDATE incidents SET status = ?, resolved_at = CASE WHEN ? = 'resolved' THEN ? ELSE NULL END WHERE id = ?")
            .bind(status)
            .bind(status)
            .bind(at)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db_err("update an incident"))?;
        if done.rows_affected() == 0 {
            return Err(MonitorError::NoIncident(id));
        }
        sqlx::query(
            "INSERT INTO incident_updates (incident, at, status, message) VALUES (?, ?, ?, ?)",
        )
        .bind(id)
        .bind(at)
        .bind(status)
        .bind(message)
        .execute(&mut *tx)
        .await
        .map_err(db_err("add an incident update"))?;
        tx.commit().await.map_err(db_err("commit"))?;
        self.incident(id).await?.ok_or(MonitorError::NoIncident(id))
    }

    /// One incident with its timeline.
    pub async fn incident(&self, id: i64) -> Result<Option<Incident>, MonitorError> {
        let Some(row) = sqlx::query("SELECT id, title, impact, status, components, created_at, resolved_at FROM incidents WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err("load an incident"))?
        else {
            return Ok(None);
        };
        let updates = sqlx::query(
            "SELECT at, status, message FROM incident_updates WHERE incident = ? ORDER BY id",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err("load incident updates"))?
        .iter()
        .map(|r| IncidentUpdate {
            at: r.get(0),
            status: r.get(1),
            message: r.get(2),
        })
        .collect();
        Ok(Some(Incident {
            id: row.get(0),
            title: row.get(1),
            impact: row.get(2),
            status: row.get(3),
            components: serde_json::from_str(row.get::<&str, _>(4)).unwrap_or_default(),
            created_at: row.get(5),
            resolved_at: row.get(6),
            updates,
        }))
    }

    /// Incidents open now or created since `since`, newest first (at most `limit`).
    pub async fn incidents(
        &self,
        since: Millis,
        limit: i64,
    ) -> Result<Vec<Incident>, MonitorError> {
        let ids: Vec<i64> = sqlx::query("SELECT id FROM incidents WHERE resolved_at IS NULL OR created_at >= ? ORDER BY id DESC LIMIT ?")
            .bind(since)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(db_err("list incidents"))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(i) = self.incident(id).await? {
                out.push(i);
            }
        }
        Ok(out)
    }

    /// SLO minutes of `slo` from minute `since` on: (minute, good, total).
    pub async fn slo_minutes(
        &self,
        slo: &str,
        since: i64,
    ) -> Result<Vec<(i64, f64, f64)>, MonitorError> {
        let rows = sqlx::query("SELECT minute, good, total FROM slo_minutes WHERE slo = ? AND minute >= ? ORDER BY minute")
            .bind(slo)
            .bind(since)
            .fetch_all(&self.pool)
            .await
            .map_err(db_err("load SLO minutes"))?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
    }

    /// Appends to the audit log of disk actions.
    pub async fn audit(
        &self,
        at: Millis,
        action: &str,
        detail: &str,
        outcome: &str,
    ) -> Result<(), MonitorError> {
        sqlx::query("INSERT INTO audit (at, action, detail, outcome) VALUES (?, ?, ?, ?)")
            .bind(at)
            .bind(action)
            .bind(detail)
            .bind(outcome)
            .execute(&self.pool)
            .await
            .map_err(db_err("append to the audit log"))?;
        Ok(())
    }

    /// The newest `limit` audit entries: (at, action, detail, outcome).
    pub async fn audit_log(
        &self,
        limit: i64,
    ) -> Result<Vec<(Millis, String, String, String)>, MonitorError> {
        let rows =
            sqlx::query("SELECT at, action, detail, outcome FROM audit ORDER BY id DESC LIMIT ?")
                .bind(limit)
                .fetch_all(&self.pool)
                .await
                .map_err(db_err("read the audit log"))?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
            .collect())
    }

    /// Deletes history, uptime, SLO minutes, audit entries and resolved incidents older than
    /// `before`.
    pub async fn prune(&self, before: Millis) -> Result<(), MonitorError> {
        let day = before.div_euclid(86_400_000);
        let minute = before.div_euclid(60_000);
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(db_err("begin a transaction"))?;
        for (sql, v) in [
            ("DELETE FROM alert_history WHERE at < ?", before),
            ("DELETE FROM uptime WHERE day < ?", day),
            ("DELETE FROM slo_minutes WHERE minute < ?", minute),
            ("DELETE FROM audit WHERE at < ?", before),
            (
                "DELETE FROM incident_updates WHERE incident IN (SELECT id FROM incidents WHERE resolved_at < ?)",
                before,
            ),
            ("DELETE FROM incidents WHERE resolved_at < ?", before),
            ("DELETE FROM silences WHERE ends_at < ?", before),
        ] {
            sqlx::query(sql)
                .bind(v)
                .execute(&mut *tx)
                .await
                .map_err(db_err("prune old state"))?;
        }
        tx.commit().await.map_err(db_err("commit"))
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

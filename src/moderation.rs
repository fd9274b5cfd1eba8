//! Hidden messages: the views derived from `hide` events of a group log.
//!
//! A `hide` event is an ordinary event of the group's chat channel (so
//! every subscriber learns of it live, in order). Applying it stores two
//! replacement frames for the hidden message — the one members read (no
//! text) and the one cadres and officers read (with the text) — which
//! `history` and backfill serve instead of the stored original, and an
//! audit row. Like every applier, this reads only the log: the times are
//! the events' own.

use rusqlite::{params, Connection, OptionalExtension};

use protocol::{AuditAction, Event, EventBody, HiddenBody, Id, Seq, ServerFrame};

/// Derives the views of one group event from its encoded frame (inside the
/// writer's transaction, before the commit). Only `hide` events change a
/// view; any other frame is passed over after one substring test — the
/// tag cannot occur inside a JSON string, where quotes are escaped.
pub fn apply_group_frame(conn: &Connection, group: Id, seq: Seq, frame: &str) -> rusqlite::Result<()> {
    if !frame.contains(r#""kind":"hide""#) {
        return Ok(());
    }
    match serde_json::from_str::<ServerFrame>(frame) {
        Ok(ServerFrame::Event(event)) if event.group == group && event.seq == seq => {
            apply_group_event(conn, &event)
        }
        _ => Ok(()),
    }
}

/// Derives the views of one committed group event. Events other than
/// `hide` change no view.
pub fn apply_group_event(conn: &Connection, event: &Event) -> rusqlite::Result<()> {
    let EventBody::Hide(hide) = &event.body else { return Ok(()) };
    let stored: Option<String> = conn
        .prepare_cached("SELECT frame FROM events WHERE log = ?1 AND seq = ?2")?
        .query_row(params![event.group as i64, hide.seq as i64], |r| r.get(0))
        .optional()?;
    let Some(Ok(ServerFrame::Event(original))) = stored.map(|f| serde_json::from_str::<ServerFrame>(&f))
    else {
        return Ok(());
    };
    let EventBody::Message(message) = &original.body else { return Ok(()) };
    // Members get neither the text nor the pictures; moderators get both.
    let redacted = |text: Option<String>, images: Vec<String>| {
        let frame = ServerFrame::Event(Event {
            body: EventBody::Hidden(HiddenBody {
                hidden_by: event.seq,
                reason: hide.reason.clone(),
                text,
                reply_to: message.reply_to,
                images,
            }),
            ..original.clone()
        });
        serde_json::to_string(&frame).expect("events serialize")
    };
    conn.prepare_cached(
        "INSERT INTO redactions (log, seq, member_frame, moderator_frame) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (log, seq) DO UPDATE SET member_frame = excluded.member_frame,
             moderator_frame = excluded.moderator_frame",
    )?
    .execute(params![
        event.group as i64,
        hide.seq as i64,
        redacted(None, Vec::new()),
        redacted(Some(message.text.clone()), message.images.clone())
    ])?;
    conn.prepare_cached(
        r#"INSERT INTO audit (log, seq, "group", at, action, actor, target, role, target_seq, until, reason)
           VALUES (?1, ?2, ?1, ?3, ?4, ?5, ?6, NULL, ?7, NULL, ?8)"#,
    )?
    .execute(params![
        event.group as i64,
        event.seq as i64,
        event.ts,
        AuditAction::Hide.as_str(),
        event.author.id as i64,
        original.author.id as i64,
        hide.seq as i64,
        hide.reason
    ])?;
    Ok(())
}

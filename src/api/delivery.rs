//! What a task looks like when it is delivered to the agent that holds it: the prompt as
//! submitted, followed by the outputs of the tasks it depended on (so a pipeline passes
//! results down the chain) and by the agent's most relevant memories. Only the holder's
//! own reads change; the stored prompt stays as submitted.

use crate::db::{memory, queries};
use crate::domain::access::Principal;
use crate::error::HubError;
use crate::startup::Hub;
use crate::views::TaskView;

/// Most characters of one dependency's output passed on.
const INPUT_CHARS: usize = 16_000;

/// Completes the views of tasks held by `principal` for delivery.
pub async fn deliver(
    hub: &Hub,
    principal: &Principal,
    views: &mut [TaskView],
) -> Result<(), HubError> {
    let Some(agent) = principal.agent_id() else {
        return Ok(());
    };
    let held: Vec<usize> = views
        .iter()
        .enumerate()
        .filter(|(_, v)| {
            v.assigned_to.as_deref() == Some(agent)
                && (v.status == "assigned" || v.status == "running")
        })
        .map(|(i, _)| i)
        .collect();
    if held.is_empty() {
        return Ok(());
    }
    inject_inputs(hub, views, &held).await?;
    inject_memories(hub, agent, views, &held).await
}

/// Appends each dependency's output in an `[INPUT from task N: title]` section.
async fn inject_inputs(hub: &Hub, views: &mut [TaskView], held: &[usize]) -> Result<(), HubError> {
    let ids: Vec<(usize, i32)> = held.iter().map(|&i| (i, views[i].id)).collect();
    let inputs = crate::db::read(&hub.reads, move |conn| {
        let mut found = Vec::new();
        for (i, id) in ids {
            for dep in queries::dependencies(conn, id)? {
                if let Some(row) = queries::task(conn, dep)? {
                    found.push((i, row));
                }
            }
        }
        Ok(found)
    })
    .await?;
    for (i, dep) in inputs {
        let output = dep
            .output
            .as_deref()
            .and_then(|sealed| hub.core.vault.open(sealed))
            .map(|o| o.plaintext)
            .unwrap_or_default();
        let output: String = output.chars().take(INPUT_CHARS).collect();
        views[i].prompt.push_str(&format!(
            "\n\n[INPUT from task {}: {}]\n{}\n[/INPUT]",
            dep.id,
            inert(&dep.title),
            output.trim_end()
        ));
    }
    Ok(())
}

/// A memory as one line that cannot close the section or open another block: line
/// breaks become spaces and square brackets become round ones.
fn inert(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\n' | '\r' => ' ',
            '[' => '(',
            ']' => ')',
            other => other,
        })
        .collect()
}

/// Most memories added to a delivered prompt, and most characters they may take.
const INJECTED_MEMORIES: i64 = 5;
const INJECTED_CHARS: usize = 2000;

/// Before a task reaches its agent, the agent's most relevant memories (searched with the
/// task's title and prompt) are appended to the prompt it receives, in a delimited
/// section. Only the holder's own view changes; the stored prompt stays as submitted.
async fn inject_memories(
    hub: &Hub,
    agent: &str,
    views: &mut [TaskView],
    held: &[usize],
) -> Result<(), HubError> {
    let searches: Vec<(usize, String)> = held
        .iter()
        .filter_map(|&i| {
            Some((
                i,
                hub.core.blind.query(
                    agent,
                    &format!("{} {}", views[i].title, views[i].prompt),
                    false,
                )?,
            ))
        })
        .collect();
    if searches.is_empty() {
        return Ok(());
    }
    let found = crate::db::read(&hub.reads, move |conn| {
        searches
            .into_iter()
            .map(|(i, expression)| {
                Ok((i, memory::search(conn, &expression, INJECTED_MEMORIES, 0)?))
            })
            .collect::<Result<Vec<_>, HubError>>()
    })
    .await?;
    for (i, rows) in found {
        let mut lines = String::new();
        for row in &rows {
            let Some(value) = hub.core.vault.open(&row.value) else {
                continue;
            };
            let line = format!("- {}: {}\n", inert(&row.key), inert(&value.plaintext));
            if lines.len() + line.len() > INJECTED_CHARS {
                break;
            }
            lines.push_str(&line);
        }
        if !lines.is_empty() {
            views[i].prompt.push_str(&format!(
                "\n\n[MEMORY]\nNotes you kept from earlier tasks:\n{lines}[/MEMORY]"
            ));
        }
    }
    Ok(())
}

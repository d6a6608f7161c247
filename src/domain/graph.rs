//! Task dependencies: checking a pipeline's references before anything is stored, and
//! tracking, while tasks run, which waiting tasks a finished task releases or fails.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use crate::error::HubError;

/// Most tasks one pipeline may hold.
pub const MAX_PIPELINE_TASKS: usize = 50;

/// Most tasks one task may wait for (as many as a pipeline holds).
pub const MAX_DEPENDENCIES: usize = MAX_PIPELINE_TASKS;

/// Reads a `depends_on` value: absent, one integer, or a list of integers (at most
/// [`MAX_DEPENDENCIES`]).
pub fn parse_depends_on(value: Option<&Value>, field: &str) -> Result<Vec<i64>, HubError> {
    let invalid = || {
        HubError::bad_request(format!(
            "{field} must be a 32-bit integer or a list of 32-bit integers"
        ))
    };
    // Task ids are 32-bit: anything wider names no task and is malformed, not unknown.
    let id = |v: &Value| super::json_integer(v).filter(|n| i32::try_from(*n).is_ok());
    match value {
        None | Some(Value::Null) => Ok(vec![]),
        Some(number @ Value::Number(_)) => Ok(vec![id(number).ok_or_else(invalid)?]),
        Some(Value::Array(items)) if items.len() > MAX_DEPENDENCIES => {
            Err(HubError::bad_request(format!(
                "{field} lists {} tasks; at most {MAX_DEPENDENCIES} are allowed",
                items.len()
            )))
        }
        Some(Value::Array(items)) => items.iter().map(|v| id(v).ok_or_else(invalid)).collect(),
        Some(_) => Err(invalid()),
    }
}

/// Checks a pipeline's `depends_on` indexes: each must name an earlier task of the same
/// pipeline. That also rules out self-references and cycles. Errors name the task.
pub fn check_pipeline(depends_on: &[Vec<i64>]) -> Result<(), HubError> {
    if depends_on.is_empty() {
        return Err(HubError::bad_request("a pipeline needs at least one task"));
    }
    if depends_on.len() > MAX_PIPELINE_TASKS {
        return Err(HubError::bad_request(format!(
            "a pipeline holds at most {MAX_PIPELINE_TASKS} tasks, not {}",
            depends_on.len()
        )));
    }
    for (index, deps) in depends_on.iter().enumerate() {
        for &dep in deps {
            let problem = if dep == index as i64 {
                "itself"
            } else if dep < 0 || dep as usize >= depends_on.len() {
                "an index outside the pipeline"
            } else if dep as usize > index {
                "a later task (a forward reference)"
            } else {
                continue;
            };
            return Err(HubError::bad_request(format!(
                "tasks[{index}] depends on {dep}, which is {problem}"
            )));
        }
    }
    Ok(())
}

/// Tasks waiting for others to finish.
#[derive(Debug, Default)]
pub struct Waiting {
    unmet: HashMap<i32, HashSet<i32>>,
    dependents: HashMap<i32, Vec<i32>>,
}

/// What one finished dependency changes.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Released {
    /// Every dependency done: ready to run.
    pub ready: Vec<i32>,
    /// A dependency did not finish `done`: these must fail.
    pub failed: Vec<i32>,
}

impl Waiting {
    /// `task` waits until every task in `unmet` is done.
    pub fn wait(&mut self, task: i32, unmet: impl IntoIterator<Item = i32>) {
        let unmet: HashSet<i32> = unmet.into_iter().collect();
        for &dep in &unmet {
            self.dependents.entry(dep).or_default().push(task);
        }
        if !unmet.is_empty() {
            self.unmet.insert(task, unmet);
        }
    }

    pub fn is_waiting(&self, task: i32) -> bool {
        self.unmet.contains_key(&task)
    }

    pub fn len(&self) -> usize {
        self.unmet.len()
    }

    pub fn is_empty(&self) -> bool {
        self.unmet.is_empty()
    }

    /// `dep` reached a terminal state; `done` tells whether it succeeded.
    pub fn finished(&mut self, dep: i32, done: bool) -> Released {
        let mut released = Released::default();
        for task in self.dependents.remove(&dep).unwrap_or_default() {
            let Some(unmet) = self.unmet.get_mut(&task) else {
                continue;
            };
            if !done {
                self.unmet.remove(&task);
                released.failed.push(task);
                continue;
            }
            unmet.remove(&dep);
            if unmet.is_empty() {
                self.unmet.remove(&task);
                released.ready.push(task);
            }
        }
        released
    }

    /// Forgets a task that left the graph some other way (cancelled, deleted).
    pub fn forget(&mut self, task: i32) {
        self.unmet.remove(&task);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn integral_floats_are_ids() {
        assert_eq!(
            parse_depends_on(Some(&json!([3.0, 4])), "d").unwrap(),
            vec![3, 4]
        );
        assert!(parse_depends_on(Some(&json!([3.5])), "d").is_err());
        assert!(parse_depends_on(Some(&json!(4_294_967_296_i64)), "d").is_err());
    }

    #[test]
    fn depends_on_is_bounded() {
        let many: Vec<i64> = (0..=MAX_DEPENDENCIES as i64).collect();
        let error = parse_depends_on(Some(&json!(many)), "depends_on").unwrap_err();
        assert!(error.to_string().contains("at most 50"), "{error}");
    }

    #[test]
    fn depends_on_is_one_index_or_a_list() {
        assert_eq!(parse_depends_on(Some(&json!(0)), "d").unwrap(), vec![0]);
        assert_eq!(
            parse_depends_on(Some(&json!([0, 2])), "d").unwrap(),
            vec![0, 2]
        );
        assert!(parse_depends_on(None, "d").unwrap().is_empty());
        assert!(parse_depends_on(Some(&json!("0")), "d").is_err());
        assert!(parse_depends_on(Some(&json!([0.5])), "d").is_err());
    }

    #[test]
    fn pipelines_refer_only_to_earlier_tasks() {
        assert!(check_pipeline(&[vec![], vec![0], vec![0], vec![1, 2]]).is_ok());
        let self_ref = check_pipeline(&[vec![], vec![1]]).unwrap_err().to_string();
        assert!(
            self_ref.contains("tasks[1]") && self_ref.contains("itself"),
            "{self_ref}"
        );
        let forward = check_pipeline(&[vec![1], vec![]]).unwrap_err().to_string();
        assert!(
            forward.contains("tasks[0]") && forward.contains("forward"),
            "{forward}"
        );
        assert!(check_pipeline(&[vec![], vec![7]])
            .unwrap_err()
            .to_string()
            .contains("outside"));
        assert!(check_pipeline(&vec![vec![]; 51])
            .unwrap_err()
            .to_string()
            .contains("at most 50"));
        assert!(check_pipeline(&[]).is_err());
    }

    #[test]
    fn a_diamond_releases_the_join_only_after_both_branches() {
        let mut graph = Waiting::default();
        graph.wait(2, [1]);
        graph.wait(3, [1]);
        graph.wait(4, [2, 3]);
        assert_eq!(graph.finished(1, true).ready, vec![2, 3]);
        assert!(graph.finished(2, true).ready.is_empty());
        assert!(graph.is_waiting(4));
        assert_eq!(graph.finished(3, true).ready, vec![4]);
        assert!(graph.is_empty());
    }

    #[test]
    fn a_failed_dependency_fails_its_dependents() {
        let mut graph = Waiting::default();
        graph.wait(2, [1]);
        graph.wait(3, [2]);
        assert_eq!(graph.finished(1, false).failed, vec![2]);
        // The cascade continues when task 2 is failed in turn.
        assert_eq!(graph.finished(2, false).failed, vec![3]);
        assert_eq!(graph.len(), 0);
    }
}

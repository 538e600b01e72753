//! The harness's hook into the engine: at one step (or every step), run it
//! twice, crash before or after saving, or fail it for good.

use std::sync::Mutex;

use slrgov_domain::workflow::{AfterStep, StepHook, StepPoint, WorkflowError};
use slrgov_domain::{Error, Reason};

/// What to do at the chosen step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    /// Run the action twice, every time it runs (the next attempt of a
    /// retried step too).
    Twice,
    /// Die before the step's outcome is saved (its effects are in IAM and
    /// the database, the row still says the step must run).
    CrashBeforeSave,
    /// Die right after the step's outcome is saved.
    CrashAfterSave,
    /// Fail the step for good: the workflow unwinds.
    Fail,
}

/// Where to act: a forward step by name, or an undo by the name of the
/// step that runs next when it runs (`None`: every step).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct At {
    /// The step's name, or every step.
    pub step: Option<&'static str>,
    /// An undo rather than an action.
    pub undo: bool,
}

/// A scripted hook: acts once (crash, fail), or at every match (twice).
#[derive(Debug)]
pub struct Script {
    rules: Vec<(At, Act)>,
    fired: Mutex<Vec<bool>>,
}

impl Script {
    /// A hook that follows `rules`.
    pub fn new(rules: Vec<(At, Act)>) -> Self {
        let fired = Mutex::new(vec![false; rules.len()]);
        Script { rules, fired }
    }

    /// The error an injected failure carries.
    pub fn injected() -> WorkflowError {
        WorkflowError::from(Error::failed_precondition(
            Reason::FailedPrecondition,
            "injected by the harness",
        ))
    }

    fn fire(&self, point: &StepPoint, wanted: impl Fn(Act) -> bool) -> Option<Act> {
        let mut fired = self.fired.lock().unwrap_or_else(|e| e.into_inner());
        for (i, (at, act)) in self.rules.iter().enumerate() {
            let matches = at.undo == point.undo && at.step.is_none_or(|s| s == point.step);
            if !matches || !wanted(*act) {
                continue;
            }
            if *act == Act::Twice {
                return Some(Act::Twice);
            }
            if !fired[i] {
                fired[i] = true;
                return Some(*act);
            }
        }
        None
    }
}

impl StepHook for Script {
    fn inject(&self, at: &StepPoint) -> Option<WorkflowError> {
        self.fire(at, |act| act == Act::Fail)
            .map(|_| Self::injected())
    }

    fn after(&self, at: &StepPoint) -> AfterStep {
        match self.fire(at, |act| act != Act::Fail) {
            Some(Act::Twice) => AfterStep::RunAgain,
            Some(Act::CrashBeforeSave) => AfterStep::CrashBeforeSave,
            Some(Act::CrashAfterSave) => AfterStep::CrashAfterSave,
            Some(Act::Fail) | None => AfterStep::Save,
        }
    }
}

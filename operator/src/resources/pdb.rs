//! The PodDisruptionBudget of each component: a node drain or cluster upgrade evicts at
//! most `maxUnavailable` of its pods at a time.

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{labels, Component};
use crate::crd::ShortenerStack;

/// The component's budget, or `None` when the spec turns budgets off.
pub fn pdb_for(stack: &ShortenerStack, component: Component) -> Option<PodDisruptionBudget> {
    let budget = &stack.spec.pod_disruption_budget;
    if !budget.enabled {
        return None;
    }
    Some(PodDisruptionBudget {
        metadata: labels::child_meta(
            stack,
            component.object_name(stack),
            labels::labels(stack, component),
        ),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(budget.max_unavailable)),
            selector: Some(LabelSelector {
                match_labels: Some(labels::selector(stack, component)),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::stack;

    #[test]
    fn one_budget_per_component_on_by_default() {
        let mut s = stack();
        for component in Component::ALL {
            let pdb = pdb_for(&s, component).unwrap();
            assert_eq!(pdb.metadata.name, Some(component.object_name(&s)));
            let spec = pdb.spec.unwrap();
            assert_eq!(spec.max_unavailable, Some(IntOrString::Int(1)));
            assert_eq!(
                spec.selector.unwrap().match_labels.unwrap(),
                labels::selector(&s, component)
            );
        }
        s.spec.pod_disruption_budget.enabled = false;
        assert!(pdb_for(&s, Component::UrlApi).is_none());
    }
}

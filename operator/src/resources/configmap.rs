//! The per-component ConfigMap of plain settings, read by the container through `envFrom`.

use k8s_openapi::api::core::v1::ConfigMap;

use super::{env, labels, Component};
use crate::crd::ShortenerStack;

pub fn config_map_for(stack: &ShortenerStack, component: Component) -> ConfigMap {
    ConfigMap {
        metadata: labels::child_meta(
            stack,
            component.config_map_name(stack),
            labels::labels(stack, component),
        ),
        data: Some(env::config_data(stack, component)),
        ..ConfigMap::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::stack;

    #[test]
    fn config_map_is_named_owned_and_holds_the_plain_settings() {
        let s = stack();
        let cm = config_map_for(&s, Component::Consumer);
        assert_eq!(cm.metadata.name.as_deref(), Some("demo-consumer-config"));
        assert_eq!(cm.metadata.namespace.as_deref(), Some("shop"));
        assert_eq!(cm.metadata.owner_references.as_ref().unwrap().len(), 1);
        assert_eq!(cm.data.unwrap()["KAFKA_GROUP_ID"], "shortener-consumer");
    }
}

//! Kafka's IncrementalAlterConfigs (KIP-339) for one topic, through librdkafka's C API:
//! the rdkafka crate only wraps the older AlterConfigs, which replaces every dynamic config
//! of the topic (resetting the ones it does not name). Blocking; run it on a blocking
//! thread.

use std::ffi::{CStr, CString};
use std::time::Duration;

use rdkafka::bindings as rd;
use rdkafka::types::RDKafkaErrorCode;

/// Sets `configs` (key, value) on `topic`, leaving its other configs as they are. `Err`
/// carries a message for `TopicError::Admin`.
pub fn set_topic_configs(
    client: *mut rd::rd_kafka_t,
    topic: &str,
    configs: &[(String, String)],
    timeout: Duration,
) -> Result<(), String> {
    let name = CString::new(topic).map_err(|e| e.to_string())?;
    let entries: Vec<(CString, CString)> = configs
        .iter()
        .map(|(k, v)| Ok((CString::new(k.as_str())?, CString::new(v.as_str())?)))
        .collect::<Result<_, std::ffi::NulError>>()
        .map_err(|e| e.to_string())?;
    let timeout_ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: every pointer below comes from librdkafka and is destroyed exactly once
    // before return; `client` outlives the call (the caller holds the admin client).
    unsafe {
        let mut resource = rd::rd_kafka_ConfigResource_new(
            rd::rd_kafka_ResourceType_t::RD_KAFKA_RESOURCE_TOPIC,
            name.as_ptr(),
        );
        let resource_guard = Guard(move || rd::rd_kafka_ConfigResource_destroy(resource));
        for (key, value) in &entries {
            let error = rd::rd_kafka_ConfigResource_add_incremental_config(
                resource,
                key.as_ptr(),
                rd::rd_kafka_AlterConfigOpType_t::RD_KAFKA_ALTER_CONFIG_OP_TYPE_SET,
                value.as_ptr(),
            );
            if !error.is_null() {
                let message = cstr(rd::rd_kafka_error_string(error));
                rd::rd_kafka_error_destroy(error);
                return Err(message);
            }
        }
        let options = rd::rd_kafka_AdminOptions_new(
            client,
            rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_INCREMENTALALTERCONFIGS,
        );
        let _options_guard = Guard(move || rd::rd_kafka_AdminOptions_destroy(options));
        let mut errstr = [0 as std::ffi::c_char; 256];
        rd::rd_kafka_AdminOptions_set_request_timeout(
            options,
            timeout_ms,
            errstr.as_mut_ptr(),
            errstr.len(),
        );
        let queue = rd::rd_kafka_queue_new(client);
        let _queue_guard = Guard(move || rd::rd_kafka_queue_destroy(queue));
        rd::rd_kafka_IncrementalAlterConfigs(client, &mut resource, 1, options, queue);
        // The request owns copies now; ours is freed on return.
        drop(resource_guard);
        // librdkafka answers by the request timeout; the extra second covers its own
        // scheduling.
        let event = rd::rd_kafka_queue_poll(queue, timeout_ms.saturating_add(1000));
        if event.is_null() {
            return Err(format!("no answer within {}s", timeout.as_secs() + 1));
        }
        let _event_guard = Guard(move || rd::rd_kafka_event_destroy(event));
        let code = rd::rd_kafka_event_error(event);
        if code != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            return Err(format!(
                "{} ({})",
                cstr(rd::rd_kafka_event_error_string(event)),
                RDKafkaErrorCode::from(code)
            ));
        }
        let result = rd::rd_kafka_event_IncrementalAlterConfigs_result(event);
        if result.is_null() {
            return Err("unexpected event in answer to IncrementalAlterConfigs".into());
        }
        let mut count = 0usize;
        let resources = rd::rd_kafka_IncrementalAlterConfigs_result_resources(result, &mut count);
        for i in 0..count {
            let r = *resources.add(i);
            let code = rd::rd_kafka_ConfigResource_error(r);
            if code != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                let detail = rd::rd_kafka_ConfigResource_error_string(r);
                let detail = if detail.is_null() {
                    String::new()
                } else {
                    cstr(detail)
                };
                return Err(format!("{} ({detail})", RDKafkaErrorCode::from(code)));
            }
        }
        Ok(())
    }
}

/// Runs its closure on drop (frees a librdkafka object on every return path).
struct Guard<F: FnMut()>(F);

impl<F: FnMut()> Drop for Guard<F> {
    fn drop(&mut self) {
        (self.0)()
    }
}

/// # Safety
/// `p` is a NUL-terminated string owned by librdkafka.
unsafe fn cstr(p: *const std::ffi::c_char) -> String {
    CStr::from_ptr(p).to_string_lossy().into_owned()
}

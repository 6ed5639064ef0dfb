from spark_sensitivity.io.redaction import redact, redact_text


def test_uri_user_info_and_secret_query_parameters_are_masked():
    assert redact_text("s3a://AKIA123:s3cr3t@bucket/data") == "s3a://***@bucket/data"
    assert redact_text("https://acct.blob/x?sv=1&sig=abc%2F&se=2") == "https://acct.blob/x?sv=1&sig=***&se=2"
    assert redact_text("hdfs://namenode:8020/data") == "hdfs://namenode:8020/data"


def test_nested_values_are_masked_by_key_name():
    value = {"input_options": {"password": "p", "fs.s3a.access.key": "k", "sep": ";"}, "k": 3}
    assert redact(value) == {
        "input_options": {"password": "***", "fs.s3a.access.key": "***", "sep": ";"},
        "k": 3,
    }

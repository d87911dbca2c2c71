from coverhunter.reporting.tables import flatten_metrics, metrics_table

METRICS = {"coarse": {"test": {"mAP": 0.5, "MR1": 2.0, "HR1": 0.25, "P10": 0.1, "n_queries": 4}}}


def test_flatten_names_model_set_and_metric():
    assert flatten_metrics(METRICS) == {"coarse.test.mAP": 0.5, "coarse.test.MR1": 2.0,
                                        "coarse.test.HR1": 0.25, "coarse.test.P10": 0.1,
                                        "coarse.test.n_queries": 4.0}


def test_table_row():
    assert metrics_table(METRICS).splitlines()[-1] == "| coarse | test | 0.500 | 2.00 | 0.250 | 0.100 | 4 |"

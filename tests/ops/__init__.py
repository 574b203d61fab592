"""Operations artefacts: Collector configs, alert rules, Grafana dashboards (issue 6)."""

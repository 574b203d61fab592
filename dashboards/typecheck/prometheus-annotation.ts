/**
 * The Prometheus data source's annotation fields (Grafana's prometheus datasource reads them and
 * migrates them into its annotation query editor). Every field is required here: a dashboard that
 * defines a Prometheus annotation says how to query it and how to title it.
 */
export interface PrometheusAnnotationFields {
  expr: string;
  step: string;
  titleFormat: string;
  textFormat: string;
  tagKeys: string;
  useValueForTime: boolean;
}

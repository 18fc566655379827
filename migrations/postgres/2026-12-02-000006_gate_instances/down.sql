DROP TABLE gate_instances;

"""A real Spark standalone cluster on 127.0.0.1: a master and workers as separate JVM processes."""

from freshlake.cluster.standalone import LocalCluster, cluster_status, start_cluster, stop_cluster

__all__ = ["LocalCluster", "cluster_status", "start_cluster", "stop_cluster"]

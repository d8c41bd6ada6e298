// Package lhchart is talforge's Longhorn-shaped test chart, written for the tests (no
// upstream file is copied). It reproduces what talforge depends on: the upstream value
// names, the longhorn-default-setting / longhorn-default-resource / longhorn-storageclass
// ConfigMaps rendered as the upstream templates render them (null values left out,
// per-data-engine settings as JSON from 1.10), simplified CRDs for Setting, BackupTarget,
// RecurringJob, Volume, Engine, BackupVolume and Backup (v1beta1 still served before
// 1.10), a longhorn-manager DaemonSet and Deployments carrying the version, and the
// pre-upgrade, post-upgrade and pre-delete hook Jobs with upstream's annotations.
//
// Nothing runs the containers: internal/testenv/lhmanager plays longhorn-manager.
package lhchart

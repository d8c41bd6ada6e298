// Validation of longhorn.*: StorageClasses, volumes, chart values, the backup target and the
// recurring jobs.

package profile

import (
	"context"
	"fmt"
	"net/url"
	"path"
	"strings"
	"time"
)

// Recurring job tasks Longhorn accepts (longhorn-manager types.RecurringJobType).
var recurringJobTasks = []string{"backup", "backup-force-create", "snapshot", "snapshot-force-create", "snapshot-cleanup", "snapshot-delete", "filesystem-trim", "system-backup"}

func (c *Cluster) validateLonghorn(ctx context.Context, e, w *problems) {
	l := c.Longhorn
	if l == nil {
		return
	}

	diskNodes := len(c.LonghornNodes())

	if p := l.SystemDiskDataPath; p != "" {
		c.validateSystemDiskDataPath(e, w, p)
	}

	if diskNodes == 0 {
		e.add("longhorn", "give at least one node a longhornDisk (or set proxmox.defaults.longhornDisk)", "Longhorn is enabled but no node has a longhornDisk")
	}

	if l.ReplicaCount < 1 || l.ReplicaCount > 20 {
		e.add("longhorn.replicaCount", "use 1-20", "%d is out of range", l.ReplicaCount)
	} else if diskNodes > 0 && l.ReplicaCount > diskNodes {
		e.add("longhorn.replicaCount", fmt.Sprintf("use at most %d, or give more nodes a longhornDisk", diskNodes), "%d replicas but only %d node(s) have a Longhorn disk: volumes would stay degraded", l.ReplicaCount, diskNodes)
	}

	if u, err := url.Parse(l.RepoURL); err != nil || (u.Scheme != "https" && u.Scheme != "http" && u.Scheme != "oci") || u.Host == "" {
		e.add("longhorn.repoURL", "use https://charts.longhorn.io or your mirror", "%q is not a chart repository URL", l.RepoURL)
	}

	jobs, groups := c.validateBackup(e)

	scNames := map[string]bool{DefaultVolumeStorageClass: true}

	for i, sc := range l.StorageClasses {
		f := func(name string) string { return fmt.Sprintf("longhorn.storageClasses[%d].%s", i, name) }

		switch {
		case !isDNSSubdomain(sc.Name):
			e.add(f("name"), "use lowercase letters, digits, '-' and '.'", "%q is not a valid StorageClass name", sc.Name)
		case scNames[sc.Name]:
			e.add(f("name"), "give each StorageClass its own name (longhorn is the chart's own)", "StorageClass %q is defined twice", sc.Name)
		}

		scNames[sc.Name] = true

		if sc.ReclaimPolicy != "Delete" && sc.ReclaimPolicy != "Retain" {
			e.add(f("reclaimPolicy"), "use Delete or Retain", "%q is not a reclaim policy", sc.ReclaimPolicy)
		}

		if sc.Replicas < 1 || (diskNodes > 0 && sc.Replicas > diskNodes) {
			e.add(f("replicas"), fmt.Sprintf("use 1-%d", max(diskNodes, 1)), "%d replicas but %d node(s) have a Longhorn disk", sc.Replicas, diskNodes)
		}

		c.checkJobRefs(e, f("recurringJobs"), sc.RecurringJobs, jobs, "job")
		c.checkJobRefs(e, f("recurringJobGroups"), sc.RecurringJobGroups, groups, "group")

		if !oneOf(sc.FSType, "ext4", "xfs") {
			e.add(f("fsType"), "use ext4 or xfs", "%q is not supported", sc.FSType)
		}

		if !oneOf(sc.DataLocality, "disabled", "best-effort", "strict-local") {
			e.add(f("dataLocality"), "use disabled, best-effort or strict-local", "%q is not a data locality", sc.DataLocality)
		} else if sc.DataLocality == "strict-local" && sc.Replicas != 1 {
			e.add(f("dataLocality"), "set replicas: 1 with strict-local", "strict-local needs exactly one replica")
		}
	}

	claims, volNames := map[string]bool{}, map[string]bool{}

	for i, v := range l.Volumes {
		if ctx.Err() != nil {
			return
		}

		f := func(name string) string { return fmt.Sprintf("longhorn.volumes[%d].%s", i, name) }

		if v.Name != "" {
			switch {
			case !isDNSLabel(v.Name):
				e.add(f("name"), "use lowercase letters, digits and '-', or leave name out and declare the volume by its claim", "%q is not a valid Longhorn volume name", v.Name)
			case volNames[v.Name]:
				e.add(f("name"), "give each volume its own name", "volume %q is declared twice", v.Name)
			}

			volNames[v.Name] = true
		}

		if !isDNSLabel(v.Namespace) {
			e.add(f("namespace"), "name the namespace of the claim", "%q is not a namespace name", v.Namespace)
		}

		switch {
		case v.Claim == "":
			e.add(f("claim"), "name the PersistentVolumeClaim that holds the data (namespace + claim); name: is only for a statically provisioned Longhorn volume", "a volume is declared by its claim")
		case !isDNSSubdomain(v.Claim):
			e.add(f("claim"), "use a valid PVC name", "%q is not a valid claim name", v.Claim)
		case claims[v.Namespace+"/"+v.Claim]:
			e.add(f("claim"), "declare each claim once", "claim %s/%s is declared twice", v.Namespace, v.Claim)
		}

		claims[v.Namespace+"/"+v.Claim] = true

		if _, err := ParseSize(strings.TrimSuffix(v.Size, "i")); err != nil || v.Size == "" {
			e.add(f("size"), "write it like 1Gi", "%q is not a size", v.Size)
		}

		if !scNames[v.StorageClass] {
			e.add(f("storageClass"), "use longhorn or a name from longhorn.storageClasses", "there is no StorageClass %q", v.StorageClass)
		}

		c.checkJobRefs(e, f("recurringJobs"), v.RecurringJobs, jobs, "job")
		c.checkJobRefs(e, f("recurringJobGroups"), v.RecurringJobGroups, groups, "group")
	}

	if _, ok := l.Values["deletingConfirmationFlag"]; ok {
		e.add("longhorn.values.deletingConfirmationFlag", "remove it: talforge never sets it", "deletingConfirmationFlag is the only guard against an uninstall deleting every volume")
	}

	if ds, ok := l.Values["defaultSettings"].(map[string]any); ok {
		if _, ok := ds["deletingConfirmationFlag"]; ok {
			e.add("longhorn.values.defaultSettings.deletingConfirmationFlag", "remove it: talforge never sets it", "with it set to true, `helm uninstall` deletes every Longhorn volume and its data")
		}

		for _, k := range []string{"backupTarget", "backupTargetCredentialSecret", "backupstorePollInterval"} {
			if _, ok := ds[k]; ok {
				e.add("longhorn.values.defaultSettings."+k, "use longhorn.backup (talforge renders it under defaultBackupStore)", "Longhorn ≥ 1.8 ignores defaultSettings.%s: the backup target moved to defaultBackupStore and the BackupTarget CR", k)
			}
		}
	}
}

// validateBackup checks longhorn.backup and returns the defined job names and groups.
func (c *Cluster) validateBackup(e *problems) (jobs, groups map[string]bool) {
	jobs, groups = map[string]bool{}, map[string]bool{"default": true}

	b := c.Longhorn.Backup
	if b == nil {
		return jobs, groups
	}

	switch m := s3TargetRE().FindStringSubmatch(b.Target); {
	case b.Target == "":
		e.add("longhorn.backup.target", "set it like s3://my-bucket@eu-central-1/", "is required")
	case m == nil:
		e.add("longhorn.backup.target", "write it like s3://my-bucket@eu-central-1/ or s3://my-bucket@eu-central-1/longhorn/", "%q is not of the form s3://bucket@region/[path/]", b.Target)
	case !strings.HasSuffix(b.Target, "/"):
		e.add("longhorn.backup.target", "add the trailing '/': "+b.Target+"/", "%q must end with '/' (Longhorn's backup store rejects it otherwise)", b.Target)
	case strings.ContainsAny(m[3], "$,"):
		e.add("longhorn.backup.target", "remove '$' and ',' from the path", "Longhorn rejects '$' and ',' in the backup path")
	}

	if b.CredentialsFile == "" {
		e.add("longhorn.backup.credentialsFile", "create it with `sops` (keys AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)", "is required")
	}

	if !isDNSSubdomain(b.CredentialSecret) {
		e.add("longhorn.backup.credentialSecret", "use a valid Secret name", "%q is not a valid Secret name", b.CredentialSecret)
	}

	if d, err := time.ParseDuration(b.PollInterval); err != nil || d < 0 || d%time.Second != 0 {
		e.add("longhorn.backup.pollInterval", "write a duration in whole seconds like 5m or 300s (0 disables polling)", "%q is not a duration", b.PollInterval)
	}

	for i, j := range b.RecurringJobs {
		f := func(name string) string { return fmt.Sprintf("longhorn.backup.recurringJobs[%d].%s", i, name) }

		switch {
		case j.Name == "":
			e.add(f("name"), "name the job, e.g. nightly-s3-backup", "is required")
		case len(j.Name) > maxRecurringJobName:
			e.add(f("name"), "shorten it", "%q is %d characters, Longhorn allows at most %d", j.Name, len(j.Name), maxRecurringJobName)
		case !recurringJobNameRE().MatchString(j.Name):
			e.add(f("name"), "use lowercase letters, digits, '-', '_' and '.', starting with a letter or digit", "%q is not a valid RecurringJob name", j.Name)
		case jobs[j.Name]:
			e.add(f("name"), "give each job its own name", "job %q is defined twice", j.Name)
		}

		jobs[j.Name] = true

		if !oneOf(j.Task, recurringJobTasks...) {
			e.add(f("task"), "use one of "+strings.Join(recurringJobTasks, ", "), "%q is not a RecurringJob task", j.Task)
		}

		if err := validateCron(j.Cron); err != nil {
			e.add(f("cron"), `write 5 fields, e.g. "0 3 * * *" for 03:00 every day`, "%v", err)
		}

		if j.Retain < 0 || j.Retain > maxRecurringRetain {
			e.add(f("retain"), fmt.Sprintf("use 1-%d", maxRecurringRetain), "%d is out of range (Longhorn's recurring-job-max-retention is %d)", j.Retain, maxRecurringRetain)
		} else if j.Retain == 0 && oneOf(j.Task, "backup", "backup-force-create", "snapshot", "snapshot-force-create") {
			e.add(f("retain"), "set how many to keep, e.g. retain: 7", "is required for a %s job", j.Task)
		}

		if j.Concurrency < 1 {
			e.add(f("concurrency"), "use 1 or more", "%d is out of range", j.Concurrency)
		}

		for k, g := range j.Groups {
			if !recurringJobGroupRE().MatchString(g) {
				e.add(fmt.Sprintf("%s[%d]", f("groups"), k), "use letters, digits, '-', '_' and '.'", "%q is not a valid group name", g)
			}

			groups[g] = true
		}

		if oneOf(j.Task, "backup", "backup-force-create") {
			for k := range j.Parameters {
				if k != "full-backup-interval" {
					e.add(f("parameters."+k), "backup jobs take only full-backup-interval", "%q is not a backup job parameter", k)
				}
			}
		}
	}

	return jobs, groups
}

func (c *Cluster) checkJobRefs(e *problems, field string, refs []string, defined map[string]bool, kind string) {
	for i, r := range refs {
		if !defined[r] {
			e.add(fmt.Sprintf("%s[%d]", field, i), fmt.Sprintf("use a %s defined in longhorn.backup.recurringJobs", kind), "there is no recurring-job %s %q", kind, r)
		}
	}
}

// validateSystemDiskDataPath checks longhorn.systemDiskDataPath and says, every time, what it
// costs: replicas on a system disk die with a reset of that disk.
func (c *Cluster) validateSystemDiskDataPath(e, w *problems, p string) {
	const field = "longhorn.systemDiskDataPath"

	switch {
	case !path.IsAbs(p) || path.Clean(p) != p:
		e.add(field, "use an absolute, clean path such as /var/lib/longhorn", "%q is not an absolute, clean path", p)
	case !strings.HasPrefix(p, "/var/"):
		e.add(field, "use a path under /var (the only writable part of a Talos system disk), such as /var/lib/longhorn", "%s is not under /var", p)
	case p == LonghornDataPath || strings.HasPrefix(p, LonghornDataPath+"/"):
		e.add(field, "leave systemDiskDataPath out to use the dedicated disks (longhornDisk)", "%s is talforge's data-disk path, not a system-disk one", p)
	}

	for _, n := range c.LonghornNodesWithDisk() {
		e.add(field, "either keep the data on the system disks (remove longhornDisk from the nodes) or on dedicated disks (remove systemDiskDataPath)",
			"node %s has a longhornDisk as well", n.Name)
	}

	w.add(field, "give the nodes a longhornDisk and move the data there (docs/longhorn.md, Moving data off the system disk)",
		"Longhorn keeps replicas on the nodes' system disks at %s: a Talos reset or reinstall that wipes a node's system disk destroys its replicas", p)
}

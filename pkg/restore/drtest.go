package restore

import (
	"context"
	"fmt"
	"strconv"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// DROptions tune a disaster-recovery test.
type DROptions struct {
	// Target names the volume the backup is restored into (default <volume>-drtest-<random>).
	Target string
	// Keep leaves the restored volume in place for inspection (default: it is deleted once
	// compared).
	Keep bool
}

// Check is one comparison of a DR test.
type Check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

// DRResult is the outcome of a disaster-recovery test.
type DRResult struct {
	Volume string `json:"volume"`
	Backup Backup `json:"backup"`
	// BackupTook is the time from asking for the backup to Longhorn reporting it Completed.
	BackupTook time.Duration `json:"backupTook"`
	// Restored is the volume the backup was restored into.
	Restored string `json:"restored"`
	// RestoreTook is the time to restore: from creating the volume to Longhorn reporting the
	// restore done.
	RestoreTook time.Duration `json:"restoreTook"`
	Checks      []Check       `json:"checks"`
	// Kept reports whether the restored volume was left in place.
	Kept bool `json:"kept"`
}

// OK reports whether every check passed.
func (r *DRResult) OK() bool {
	for _, c := range r.Checks {
		if !c.OK {
			return false
		}
	}
	return len(r.Checks) > 0
}

// DRTest proves on a live cluster that a volume can be restored: it backs the volume up,
// restores that backup into a new volume, compares what Longhorn reports about the source,
// the backup and the restored volume, and measures the time to restore. The source volume is
// only read (and snapshotted).
func (c *Client) DRTest(ctx context.Context, volume string, opts DROptions) (*DRResult, error) {
	src, err := c.lh(volumeGVR).Get(ctx, volume, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("there is no Longhorn volume %s (see `talforge status` for the cluster's volumes)", volume)
	}
	if err != nil {
		return nil, fmt.Errorf("read volume %s: %w", volume, err)
	}
	srcSize, _, _ := unstructured.NestedString(src.Object, "spec", "size")
	replicas, _, _ := unstructured.NestedInt64(src.Object, "spec", "numberOfReplicas")
	if replicas < 1 {
		replicas = 1
	}
	target := opts.Target
	if target == "" {
		target = drTestName(volume)
	}
	if _, err := c.lh(volumeGVR).Get(ctx, target, metav1.GetOptions{}); err == nil {
		return nil, fmt.Errorf("volume %s exists already: choose another target name", target)
	} else if !apierrors.IsNotFound(err) {
		return nil, err
	}

	res := &DRResult{Volume: volume, Restored: target}
	start := c.opts.Now()
	b, err := c.BackupVolume(ctx, volume)
	if err != nil {
		return nil, err
	}
	res.Backup, res.BackupTook = *b, c.opts.Now().Sub(start)
	c.logf("volume %s: backup %s completed in %s", volume, b.Name, res.BackupTook.Round(time.Millisecond))

	size, _ := strconv.ParseInt(srcSize, 10, 64)
	d := Declared{Name: target, Size: size, Replicas: int(replicas)}
	start = c.opts.Now()
	if err := c.createFromBackup(ctx, d, b); err != nil {
		return nil, err
	}
	if err := c.waitRestored(ctx, target); err != nil {
		c.cleanup(ctx, target, opts.Keep)
		return nil, err
	}
	res.RestoreTook = c.opts.Now().Sub(start)
	c.logf("volume %s: restored into %s in %s", volume, target, res.RestoreTook.Round(time.Millisecond))

	restored, err := c.lh(volumeGVR).Get(ctx, target, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("read restored volume %s: %w", target, err)
	}
	res.Checks = compare(src, restored, b)
	res.Kept = opts.Keep
	c.cleanup(ctx, target, opts.Keep)
	return res, nil
}

func (c *Client) cleanup(ctx context.Context, target string, keep bool) {
	if keep {
		return
	}
	if err := c.lh(volumeGVR).Delete(ctx, target, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		c.logf("could not delete the test volume %s: %v (delete it by hand)", target, err)
	}
}

// compare checks what Longhorn can attest without attaching the volumes: the restore
// finished and is not faulted, the restored volume has the source's size and the backup's
// recorded size, and it came from exactly this backup.
func compare(src, restored *unstructured.Unstructured, b *Backup) []Check {
	str := func(u *unstructured.Unstructured, path ...string) string {
		v, _, _ := unstructured.NestedString(u.Object, path...)
		return v
	}
	var checks []Check
	done, why, err := restoreState(restored)
	switch {
	case err != nil:
		checks = append(checks, Check{Name: "restore finished", Detail: err.Error()})
	case !done:
		checks = append(checks, Check{Name: "restore finished", Detail: why})
	default:
		checks = append(checks, Check{Name: "restore finished", OK: true, Detail: "Longhorn cleared restoreRequired; volume " + str(restored, "status", "state")})
	}
	srcSize, gotSize := str(src, "spec", "size"), str(restored, "spec", "size")
	checks = append(checks, Check{Name: "size", OK: srcSize == gotSize && strconv.FormatInt(b.VolumeSize, 10) == srcSize,
		Detail: fmt.Sprintf("source %s bytes, backup %d bytes, restored %s bytes", srcSize, b.VolumeSize, gotSize)})
	from, last := str(restored, "spec", "fromBackup"), str(restored, "status", "lastBackup")
	checks = append(checks, Check{Name: "backup", OK: from == b.URL && last == b.Name,
		Detail: fmt.Sprintf("restored from %s, Longhorn reports last backup %s", from, last)})
	return checks
}

// drTestName is a fresh volume name within Kubernetes' 63 characters.
func drTestName(volume string) string {
	suffix := "-drtest-" + randomSuffix(6)
	if len(volume)+len(suffix) > 63 {
		volume = volume[:63-len(suffix)]
	}
	return volume + suffix
}

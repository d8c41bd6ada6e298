package backuptarget

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/longhorn/backupstore"
	// The S3 driver registers itself with backupstore in its init (s3/s3.go).
	_ "github.com/longhorn/backupstore/s3"
	"github.com/longhorn/backupstore/types"
)

// Listing is what a backup target holds: its backup volumes, each with its backups.
type Listing struct {
	// Target is the target URL as Longhorn's driver spells it.
	Target string `json:"target"`
	// Volumes are sorted by name.
	Volumes []*Volume `json:"volumes"`
}

// Volume is one backup volume: the volume.cfg of one Longhorn volume and its backups.
type Volume struct {
	Name   string            `json:"name"`
	Size   int64             `json:"size"`
	Labels map[string]string `json:"labels,omitempty"`
	// Created is volume.cfg's CreatedTime as written (RFC 3339).
	Created string `json:"created,omitempty"`
	// LastBackup and LastBackupAt are what volume.cfg says the newest backup is.
	LastBackup   string `json:"lastBackup,omitempty"`
	LastBackupAt string `json:"lastBackupAt,omitempty"`
	// BlockCount is the number of blocks stored for the volume, as volume.cfg counts it.
	BlockCount   int64  `json:"blockCount"`
	Compression  string `json:"compression,omitempty"`
	DataEngine   string `json:"dataEngine,omitempty"`
	StorageClass string `json:"storageClass,omitempty"`
	BackingImage string `json:"backingImage,omitempty"`
	// Backups are the completed backups, newest first.
	Backups []*Backup `json:"backups"`
	// InProgress names backups whose config has no creation time yet: being written, or
	// abandoned by a backup that failed. Longhorn does not list them either (inspect.go).
	InProgress []string `json:"inProgress,omitempty"`
	// Problems say what of the volume could not be read (volume.cfg, a backup config).
	Problems []string `json:"problems,omitempty"`

	configs int // backup configs read (parsed or not)
}

// Backup is one completed backup.
type Backup struct {
	Name string `json:"name"`
	// URL is the backup's URL as Longhorn names it (backupstore.EncodeBackupURL):
	// the target with ?backup=<name>&volume=<volume>. A restore takes it as fromBackup.
	URL             string `json:"url"`
	Volume          string `json:"volume"`
	Snapshot        string `json:"snapshot"`
	SnapshotCreated string `json:"snapshotCreated,omitempty"`
	// Created is when the backup completed (second resolution, UTC).
	Created time.Time `json:"created"`
	// Size is the size of the data the backup holds (blocks × block size).
	Size int64 `json:"size"`
	// VolumeSize is the backup volume's size (volume.cfg), as Longhorn reports it.
	VolumeSize  int64             `json:"volumeSize"`
	Labels      map[string]string `json:"labels,omitempty"`
	Parameters  map[string]string `json:"parameters,omitempty"`
	Compression string            `json:"compression"`
	Incremental bool              `json:"incremental"`
	// BlockCount is the number of blocks the backup references; -1 when unknown (Inspect
	// does not read the block list).
	BlockCount int `json:"blockCount"`
	// Claim is the claim the backed-up volume was bound to (the KubernetesStatus label);
	// nil when the backup does not say.
	Claim *KubernetesStatus `json:"claim,omitempty"`

	blocks []backupstore.BlockMapping // kept by Verify only
}

// ClaimName is "namespace/claim" or "" when the backup names no claim.
func (b *Backup) ClaimName() string {
	if b == nil || b.Claim == nil {
		return ""
	}
	return b.Claim.Namespace + "/" + b.Claim.PVCName
}

// List reads every backup volume of target and its completed backups, straight from S3
// with Longhorn's own library and the credentials of the target's credential Secret.
// What cannot be read of one volume is reported in its Problems; an error means the
// target itself could not be read.
//
// The backupstore driver does its requests without a context; ctx is checked between
// them.
func List(ctx context.Context, target string, creds Credentials) (*Listing, error) {
	var l *Listing
	err := WithEnv(creds, func() error {
		driver, err := openDriver(target)
		if err != nil {
			return err
		}
		l, _, err = scan(ctx, driver, target, nil, false)
		return err
	})
	if err != nil {
		return nil, err
	}
	return l, nil
}

// Inspect reads one backup by its URL (as Longhorn writes it in a Backup's status.url or a
// volume's fromBackup), with backupstore.InspectBackup.
func Inspect(ctx context.Context, backupURL string, creds Credentials) (*Backup, error) {
	if _, _, _, err := backupstore.DecodeBackupURL(backupURL); err != nil {
		return nil, fmt.Errorf("backup URL %q: %w", backupURL, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var b *Backup
	err := WithEnv(creds, func() error {
		info, err := backupstore.InspectBackup(backupURL)
		if err != nil {
			return explain(fmt.Errorf("inspect backup %s: %w", backupURL, err))
		}
		b = &Backup{
			Name: info.Name, URL: info.URL, Volume: info.VolumeName, Snapshot: info.SnapshotName,
			SnapshotCreated: info.SnapshotCreated, Created: parseTime(info.Created), Size: info.Size,
			VolumeSize: info.VolumeSize, Labels: info.Labels, Parameters: info.Parameters,
			Compression: info.CompressionMethod, Incremental: info.IsIncremental, BlockCount: -1,
		}
		b.Claim, _ = ParseKubernetesStatus(info.Labels)
		return nil
	})
	return b, err
}

// openDriver opens Longhorn's driver for target; its init lists the bucket, so this is
// where wrong keys, a missing bucket or a wrong region show first. Call inside WithEnv.
func openDriver(target string) (backupstore.BackupStoreDriver, error) {
	if _, err := ParseURL(target); err != nil {
		return nil, err
	}
	d, err := backupstore.GetBackupStoreDriver(target)
	if err != nil {
		return nil, explain(fmt.Errorf("open backup target %s: %w", target, err))
	}
	return d, nil
}

// scan reads the target's volumes (only the named ones, when only is not empty) and their
// backup configs. It returns what it could not read as problems too (Verify's report);
// keepBlocks keeps each backup's block list for Verify.
func scan(ctx context.Context, driver backupstore.BackupStoreDriver, target string, only []string, keepBlocks bool) (*Listing, []Problem, error) {
	// List walks the volume directories and each volume's backups directory (list.go).
	infos, err := backupstore.List("", target, false)
	if err != nil {
		return nil, nil, explain(fmt.Errorf("list backup volumes of %s: %w", target, err))
	}
	names := make([]string, 0, len(infos))
	for name := range infos {
		names = append(names, name)
	}
	var problems []Problem
	if len(only) > 0 {
		for _, name := range only {
			if _, ok := infos[name]; !ok {
				problems = append(problems, Problem{Volume: name, Kind: ProblemVolumeMissing,
					Detail: "the target has no backup volume of that name"})
			}
		}
		names = intersect(names, only)
	}
	sort.Strings(names)

	l := &Listing{Target: driver.GetURL(), Volumes: make([]*Volume, 0, len(names))}
	for _, name := range names {
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		v, ps := scanVolume(ctx, driver, name, infos[name], keepBlocks)
		l.Volumes = append(l.Volumes, v)
		problems = append(problems, ps...)
	}
	return l, problems, nil
}

func scanVolume(ctx context.Context, driver backupstore.BackupStoreDriver, name string, info *backupstore.VolumeInfo, keepBlocks bool) (*Volume, []Problem) {
	v := &Volume{Name: name, Backups: []*Backup{}}
	var problems []Problem
	add := func(p Problem) {
		problems = append(problems, p)
		v.Problems = append(v.Problems, p.String())
	}
	if msg := info.Messages[types.MessageTypeError]; msg != "" {
		// List says so when volume.cfg is missing (list.go addListVolume); it then does not
		// look for the volume's backups, and neither can a restore (it loads volume.cfg).
		add(Problem{Volume: name, Path: volumeConfigPath(name), Kind: ProblemVolumeConfig, Detail: msg})
		return v, problems
	}
	cfg, err := loadVolumeConfig(driver, name)
	if err != nil {
		add(Problem{Volume: name, Path: volumeConfigPath(name), Kind: ProblemVolumeConfig, Detail: "volume.cfg does not parse: " + err.Error()})
		return v, problems
	}
	v.Size, v.Labels, v.Created = cfg.Size, cfg.Labels, cfg.CreatedTime
	v.LastBackup, v.LastBackupAt, v.BlockCount = cfg.LastBackupName, cfg.LastBackupAt, cfg.BlockCount
	v.Compression, v.DataEngine, v.StorageClass, v.BackingImage = cfg.CompressionMethod, cfg.DataEngine, cfg.StorageClassName, cfg.BackingImageName

	backupNames := make([]string, 0, len(info.Backups))
	for b := range info.Backups {
		backupNames = append(backupNames, b)
	}
	sort.Strings(backupNames)
	v.configs = len(backupNames)
	for _, bn := range backupNames {
		if ctx.Err() != nil {
			return v, problems
		}
		bc, err := loadBackupConfig(driver, name, bn)
		if err != nil {
			add(Problem{Volume: name, Backup: bn, Path: backupConfigPath(name, bn), Kind: ProblemBackupConfig, Detail: "the backup config does not parse: " + err.Error()})
			continue
		}
		if bc.CreatedTime == "" { // backupstore isBackupInProgress (config.go:324)
			v.InProgress = append(v.InProgress, bn)
			continue
		}
		b := &Backup{
			Name: bn, URL: backupstore.EncodeBackupURL(bn, name, driver.GetURL()), Volume: name,
			Snapshot: bc.SnapshotName, SnapshotCreated: bc.SnapshotCreatedAt, Created: parseTime(bc.CreatedTime),
			Size: bc.Size, VolumeSize: cfg.Size, Labels: bc.Labels, Parameters: bc.Parameters,
			Compression: bc.CompressionMethod, Incremental: bc.IsIncremental, BlockCount: len(bc.Blocks),
		}
		b.Claim, _ = ParseKubernetesStatus(bc.Labels)
		if keepBlocks {
			b.blocks = bc.Blocks
		}
		v.Backups = append(v.Backups, b)
	}
	if last := cfg.LastBackupName; last != "" && !slices.Contains(backupNames, last) {
		// Deleting a backup moves LastBackupName on (deltablock.go DeleteDeltaBlockBackup),
		// so a name without its config means the config was lost.
		add(Problem{Volume: name, Backup: last, Path: backupConfigPath(name, last), Kind: ProblemBackupConfig,
			Detail: "volume.cfg names it as the last backup, but its backup config is missing"})
	}
	sortNewestFirst(v.Backups)
	return v, problems
}

// sortNewestFirst orders backups by completion time, then snapshot time (Created has
// second resolution), then name, so the order is total and stable.
func sortNewestFirst(bs []*Backup) {
	sort.SliceStable(bs, func(i, j int) bool {
		a, b := bs[i], bs[j]
		if !a.Created.Equal(b.Created) {
			return a.Created.After(b.Created)
		}
		if ta, tb := parseTime(a.SnapshotCreated), parseTime(b.SnapshotCreated); !ta.Equal(tb) {
			return ta.After(tb)
		}
		return a.Name < b.Name
	})
}

func parseTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}
	}
	return t
}

// LatestForClaim is the newest backup of the claim namespace/claim across all backup
// volumes: a claim that was re-created (a rebuilt cluster, a restored claim) is a new
// Longhorn volume pvc-<new uid>, so its backups live under more than one backup volume,
// and the newest one wins. Nil when no backup names the claim.
func (l *Listing) LatestForClaim(namespace, claim string) *Backup {
	var latest []*Backup
	for _, v := range l.Volumes {
		for _, b := range v.Backups {
			if b.Claim != nil && b.Claim.Namespace == namespace && b.Claim.PVCName == claim {
				latest = append(latest, b)
				break // v.Backups is newest first
			}
		}
	}
	if len(latest) == 0 {
		return nil
	}
	sortNewestFirst(latest)
	return latest[0]
}

// LatestForVolume is the newest backup of the backup volume name, nil when it has none.
func (l *Listing) LatestForVolume(name string) *Backup {
	for _, v := range l.Volumes {
		if v.Name == name && len(v.Backups) > 0 {
			return v.Backups[0]
		}
	}
	return nil
}

// Claim is one claim as the backups know it.
type Claim struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// Latest is the claim's newest backup.
	Latest *Backup `json:"latest"`
	// Backups counts the claim's backups; Volumes names the backup volumes they are in.
	Backups int      `json:"backups"`
	Volumes []string `json:"volumes"`
}

// Claims lists every claim the backups name (the KubernetesStatus label), sorted by
// namespace and name, each with its newest backup.
func (l *Listing) Claims() []Claim {
	byKey := map[string]*Claim{}
	for _, v := range l.Volumes {
		for _, b := range v.Backups {
			if b.Claim == nil {
				continue
			}
			k := b.ClaimName()
			c := byKey[k]
			if c == nil {
				c = &Claim{Namespace: b.Claim.Namespace, Name: b.Claim.PVCName}
				byKey[k] = c
			}
			c.Backups++
			if !slices.Contains(c.Volumes, v.Name) {
				c.Volumes = append(c.Volumes, v.Name)
			}
		}
	}
	out := make([]Claim, 0, len(byKey))
	for _, c := range byKey {
		c.Latest = l.LatestForClaim(c.Namespace, c.Name)
		sort.Strings(c.Volumes)
		out = append(out, *c)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Namespace != out[j].Namespace {
			return out[i].Namespace < out[j].Namespace
		}
		return out[i].Name < out[j].Name
	})
	return out
}

func intersect(names, only []string) []string {
	var out []string
	for _, n := range names {
		if slices.Contains(only, n) {
			out = append(out, n)
		}
	}
	return out
}

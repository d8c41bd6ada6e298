package backuptarget

import "encoding/json"

// KubernetesStatusLabel is the backup label in which longhorn-manager records the claim a
// backed-up volume was bound to (types.KubernetesStatusLabel, longhorn-manager
// types/types.go). api/snapshot.go SnapshotBackup sets it on every backup of a volume with
// status.kubernetesStatus, recurring jobs included; controller/volume_controller.go reads
// it back on restore.
const KubernetesStatusLabel = "KubernetesStatus"

// KubernetesStatus is longhorn-manager's KubernetesStatus (k8s/pkg/apis/longhorn/v1beta2
// volume.go), as the backup label carries it in JSON: where the volume was bound when it
// was backed up.
type KubernetesStatus struct {
	// Namespace and PVCName name the claim. LastPVCRefAt is set once the claim no longer
	// existed (Longhorn keeps the last one it saw).
	Namespace    string `json:"namespace"`
	PVCName      string `json:"pvcName"`
	PVName       string `json:"pvName"`
	PVStatus     string `json:"pvStatus"`
	LastPVCRefAt string `json:"lastPVCRefAt"`
	// WorkloadsStatus are the pods that used the volume; LastPodRefAt is set once none did.
	WorkloadsStatus []WorkloadStatus `json:"workloadsStatus"`
	LastPodRefAt    string           `json:"lastPodRefAt"`
}

// WorkloadStatus is longhorn-manager's WorkloadStatus (same file).
type WorkloadStatus struct {
	PodName      string `json:"podName"`
	PodStatus    string `json:"podStatus"`
	WorkloadName string `json:"workloadName"`
	WorkloadType string `json:"workloadType"`
}

// ParseKubernetesStatus reads the KubernetesStatus label of a backup (or backup volume). It
// returns the status and true when the label is there, is JSON, and names a claim
// (namespace and pvcName); nil and false otherwise: a backup of a volume that was never
// bound to a claim, or one made some other way, does not carry it.
func ParseKubernetesStatus(labels map[string]string) (*KubernetesStatus, bool) {
	raw, ok := labels[KubernetesStatusLabel]
	if !ok || raw == "" {
		return nil, false
	}
	var ks KubernetesStatus
	if err := json.Unmarshal([]byte(raw), &ks); err != nil || ks.Namespace == "" || ks.PVCName == "" {
		return nil, false
	}
	return &ks, true
}

// Label renders ks as Longhorn writes the label value (for tests and tools that make
// backups the way Longhorn does).
func (ks KubernetesStatus) Label() string {
	b, _ := json.Marshal(ks) // plain strings and slices always marshal
	return string(b)
}

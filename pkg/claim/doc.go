// Package claim finds the Longhorn volume that holds a declared PersistentVolumeClaim's data.
//
// A profile declares data by claim (namespace + PVC name), because that is the one name that
// survives: Longhorn's CSI driver names a dynamically provisioned volume after its PV,
// pvc-<claim uid> (longhorn-manager csi/controller_server.go, CreateVolume uses the CSI
// request name, which the external-provisioner sets to "pvc-" + the claim's UID), so every
// new claim, and every rebuilt cluster, has a new volume name. The way from the claim to the
// volume is the way Kubernetes binds them: PVC spec.volumeName names the PV, and the PV's CSI
// volumeHandle (driver driver.longhorn.io) is the Longhorn volume's name.
package claim

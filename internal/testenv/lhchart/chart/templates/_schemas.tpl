{{- define "lhchart.conditions" -}}
conditions:
  type: array
  nullable: true
  items:
    type: object
    properties:
      type: {type: string}
      status: {type: string}
      reason: {type: string}
      message: {type: string}
      lastProbeTime: {type: string}
      lastTransitionTime: {type: string}
{{- end -}}

{{- /* Setting: the value is a TOP-LEVEL field, there is no spec. */ -}}
{{- define "lhchart.schema.setting" -}}
value:
  type: string
status:
  type: object
  properties:
    applied: {type: boolean}
{{- end -}}

{{- define "lhchart.schema.backuptarget" -}}
spec:
  type: object
  properties:
    backupTargetURL: {type: string}
    credentialSecret: {type: string}
    pollInterval: {type: string}
    syncRequestedAt: {type: string, format: date-time, nullable: true}
status:
  type: object
  properties:
    available: {type: boolean}
    lastSyncedAt: {type: string, format: date-time, nullable: true}
    ownerID: {type: string}
    {{- include "lhchart.conditions" . | nindent 4 }}
{{- end -}}

{{- define "lhchart.schema.recurringjob" -}}
spec:
  type: object
  properties:
    name: {type: string}
    groups:
      type: array
      items: {type: string}
    task:
      type: string
      enum:
      - snapshot
      - snapshot-force-create
      - snapshot-cleanup
      - snapshot-delete
      - backup
      - backup-force-create
      - filesystem-trim
      {{- if semverCompare ">=1.9.0-0" .Chart.Version }}
      - system-backup
      {{- end }}
    cron: {type: string}
    retain: {type: integer}
    concurrency: {type: integer}
    labels:
      type: object
      additionalProperties: {type: string}
    parameters:
      type: object
      additionalProperties: {type: string}
status:
  type: object
  properties:
    ownerID: {type: string}
    executionCount: {type: integer}
{{- end -}}

{{- define "lhchart.schema.volume" -}}
spec:
  type: object
  x-kubernetes-preserve-unknown-fields: true
  properties:
    size: {type: string}
    numberOfReplicas: {type: integer}
    frontend: {type: string}
    dataEngine: {type: string, enum: [v1, v2]}
    accessMode: {type: string}
    staleReplicaTimeout: {type: integer}
    backupTargetName: {type: string}
    fromBackup: {type: string}
    dataSource: {type: string}
status:
  type: object
  properties:
    ownerID: {type: string}
    state: {type: string}
    robustness: {type: string}
    currentNodeID: {type: string}
    lastBackup: {type: string}
    lastBackupAt: {type: string}
    lastDegradedAt: {type: string}
    restoreRequired: {type: boolean}
    restoreInitiated: {type: boolean}
    isStandby: {type: boolean}
    actualSize: {type: integer}
    cloneStatus:
      type: object
      properties:
        sourceVolume: {type: string}
        snapshot: {type: string}
        state: {type: string}
    kubernetesStatus:
      type: object
      properties:
        namespace: {type: string}
        pvcName: {type: string}
        pvName: {type: string}
        pvStatus: {type: string}
        lastPVCRefAt: {type: string}
        lastPodRefAt: {type: string}
        workloadsStatus:
          type: array
          nullable: true
          items:
            type: object
            properties:
              podName: {type: string}
              podStatus: {type: string}
              workloadName: {type: string}
              workloadType: {type: string}
    {{- include "lhchart.conditions" . | nindent 4 }}
{{- end -}}

{{- define "lhchart.schema.engine" -}}
spec:
  type: object
  properties:
    volumeName: {type: string}
    nodeID: {type: string}
status:
  type: object
  properties:
    currentState: {type: string}
    rebuildStatus:
      type: object
      nullable: true
      additionalProperties:
        type: object
        properties:
          isRebuilding: {type: boolean}
          progress: {type: integer}
          state: {type: string}
          error: {type: string}
          fromReplicaAddress: {type: string}
{{- end -}}

{{- define "lhchart.schema.backupvolume" -}}
spec:
  type: object
  properties:
    backupTargetName: {type: string, nullable: true}
    volumeName: {type: string}
    syncRequestedAt: {type: string, format: date-time, nullable: true}
status:
  type: object
  properties:
    lastBackupName: {type: string}
    lastBackupAt: {type: string}
    size: {type: string}
    labels:
      type: object
      nullable: true
      additionalProperties: {type: string}
    createdAt: {type: string}
    dataStored: {type: string}
    storageClassName: {type: string}
    ownerID: {type: string}
    lastSyncedAt: {type: string, format: date-time, nullable: true}
{{- end -}}

{{- define "lhchart.schema.backup" -}}
spec:
  type: object
  properties:
    snapshotName: {type: string}
    backupMode: {type: string}
    syncRequestedAt: {type: string, format: date-time, nullable: true}
    labels:
      type: object
      nullable: true
      additionalProperties: {type: string}
status:
  type: object
  properties:
    ownerID: {type: string}
    state: {type: string}
    url: {type: string}
    volumeName: {type: string}
    volumeSize: {type: string}
    volumeCreated: {type: string}
    snapshotName: {type: string}
    snapshotCreatedAt: {type: string}
    size: {type: string}
    labels:
      type: object
      nullable: true
      additionalProperties: {type: string}
    backupCreatedAt: {type: string}
    progress: {type: integer}
    backupTargetName: {type: string}
    compressionMethod: {type: string}
    newlyUploadDataSize: {type: string}
    reUploadedDataSize: {type: string}
    error: {type: string}
    lastSyncedAt: {type: string, format: date-time, nullable: true}
{{- end -}}


{{- define "lhchart.schema.snapshot" -}}
spec:
  type: object
  properties:
    volume: {type: string}
    createSnapshot: {type: boolean}
    labels:
      type: object
      nullable: true
      additionalProperties: {type: string}
status:
  type: object
  properties:
    parent: {type: string}
    creationTime: {type: string}
    size: {type: integer}
    userCreated: {type: boolean}
    readyToUse: {type: boolean}
    markRemoved: {type: boolean}
    ownerID: {type: string}
    error: {type: string}
    restoreSize: {type: integer}
{{- end -}}

{{- /* Replica (longhorn k8s/pkg/apis/longhorn/v1beta2/replica.go): InstanceSpec inline
(volumeName, nodeID), healthyAt/failedAt; InstanceStatus.currentState. */ -}}
{{- define "lhchart.schema.replica" -}}
spec:
  type: object
  x-kubernetes-preserve-unknown-fields: true
  properties:
    volumeName: {type: string}
    nodeID: {type: string}
    dataEngine: {type: string}
    healthyAt: {type: string}
    failedAt: {type: string}
status:
  type: object
  x-kubernetes-preserve-unknown-fields: true
  properties:
    currentState: {type: string}
    ownerID: {type: string}
{{- end -}}

{{- /* Node (v1beta2/node.go): allowScheduling; conditions Ready and Schedulable. */ -}}
{{- define "lhchart.schema.node" -}}
spec:
  type: object
  x-kubernetes-preserve-unknown-fields: true
  properties:
    name: {type: string}
    allowScheduling: {type: boolean}
status:
  type: object
  x-kubernetes-preserve-unknown-fields: true
  properties:
    {{- include "lhchart.conditions" . | nindent 4 }}
{{- end -}}

{{- /* EngineImage (v1beta2/engineimage.go): image; status.state (deployed, deploying, ...). */ -}}
{{- define "lhchart.schema.engineimage" -}}
spec:
  type: object
  properties:
    image: {type: string}
status:
  type: object
  x-kubernetes-preserve-unknown-fields: true
  properties:
    state: {type: string}
{{- end -}}

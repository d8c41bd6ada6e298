package redact

import "sync"

// The allow-lists: the fields whose string and number values are shown in clear, per
// document kind. Picked from machinery's config types (pkg/machinery/config/types/v1alpha1/
// v1alpha1_types.go and the multi-document kinds under config/types/{block,cluster,cri,k8s,
// network,runtime,security}), field by field; allow_test.go checks every pattern against those
// Go types and checks that none of them is a field machinery itself redacts. Anything not
// listed is redacted: free-form maps (extraArgs, env, extraConfig, admission and audit
// configurations, extraManifestHeaders), file contents, inline manifests, registry auth,
// encryption keys, kernel args, udev rules, usernames.
//
// Booleans need no entry: they are shown everywhere (one bit cannot carry a credential).

// Version identifies the allow-lists. Bump it whenever they change, so that views written
// with the previous lists (which may show a value now known to be unsafe) are rewritten.
const Version = 1

// universal fields identify a multi-document config document.
var universal = []string{"apiVersion", "kind", "name"}

// v1alpha1Patterns is the allow-list of the v1alpha1 document (machine:, cluster:).
var v1alpha1Patterns = []string{
	"version",
	"machine.type",
	"machine.ca.crt",
	"machine.acceptedCAs[].crt",
	"machine.certSANs[]",
	"machine.kubelet.{image,clusterDNS[],nodeIP.validSubnets[]}",
	"machine.kubelet.extraMounts[].{destination,type,source,options[]}",
	"machine.kubelet.extraMounts[].{uidMappings,gidMappings}[].{containerID,hostID,size}",
	"machine.network.{hostname,nameservers[],searchDomains[]}",
	"machine.network.extraHostEntries[].{ip,aliases[]}",
	"machine.network.kubespan.{mtu,filters.endpoints[],filters.excludeAdvertisedNetworks[]}",
	"machine.network.interfaces[].{interface,addresses[],cidr,mtu,vip.ip,bridge.interfaces[],bridgePort.master}",
	"machine.network.interfaces[].{deviceSelector,bond.deviceSelectors[]}.{busPath,hardwareAddr,permanentAddr,pciID,driver}",
	"machine.network.interfaces[].{routes[],vlans[].routes[]}.{network,gateway,source,metric,mtu}",
	"machine.network.interfaces[].{dhcpOptions,vlans[].dhcpOptions}.{routeMetric,duidv6}",
	"machine.network.interfaces[].vlans[].{addresses[],cidr,vlanId,mtu,vip.ip}",
	"machine.network.interfaces[].bond.{interfaces[],arpIPTarget[],mode,xmitHashPolicy,lacpRate,adActorSystem,arpValidate," +
		"arpAllTargets,primary,primaryReselect,failOverMac,adSelect,miimon,updelay,downdelay,arpInterval,resendIgmp,minLinks," +
		"lpInterval,packetsPerSlave,numPeerNotif,tlbDynamicLb,allSlavesActive,adActorSysPrio,adUserPortKey,peerNotifyDelay}",
	"machine.network.interfaces[].wireguard.{listenPort,firewallMark}",
	"machine.network.interfaces[].wireguard.peers[].{publicKey,endpoint,persistentKeepaliveInterval,allowedIPs[]}",
	"machine.disks[].{device,partitions[].size,partitions[].mountpoint}",
	"machine.install.{disk,image,extensions[].image}",
	"machine.install.diskSelector.{size,name,model,serial,modalias,uuid,wwid,type,busPath}",
	"machine.files[].{path,op,permissions}",
	"machine.time.{servers[],bootTimeout}",
	"machine.{sysctls,sysfs}.*",
	"machine.registries.mirrors.*.endpoints[]",
	"machine.registries.config.*.tls.{clientIdentity.crt,ca}",
	"machine.systemDiskEncryption.{state,ephemeral}.{provider,cipher,keySize,blockSize,options[],keys[].slot,keys[].kms.endpoint}",
	"machine.features.kubernetesTalosAPIAccess.{allowedRoles[],allowedKubernetesNamespaces[]}",
	"machine.features.{kubePrism.port,nodeAddressSortAlgorithm}",
	"machine.logging.destinations[].{endpoint,format}",
	"machine.kernel.modules[].{name,parameters[]}",
	"machine.seccompProfiles[].name",
	"machine.{nodeLabels,nodeAnnotations,nodeTaints}.*",
	// The cluster ID is public (it names the cluster to the discovery service); its secret is not.
	"cluster.id",
	"cluster.clusterName",
	"cluster.controlPlane.{endpoint,localAPIServerPort}",
	"cluster.network.{cni.name,cni.urls[],dnsDomain,podSubnets[],serviceSubnets[]}",
	"cluster.{ca,aggregatorCA,etcd.ca}.crt",
	"cluster.acceptedCAs[].crt",
	"cluster.{apiServer,controllerManager,proxy,scheduler,etcd,coreDNS}.image",
	"cluster.{apiServer,controllerManager,scheduler}.extraVolumes[].{hostPath,mountPath}",
	"cluster.{apiServer,controllerManager,scheduler}.resources.{requests,limits}.*",
	"cluster.apiServer.{certSANs[],admissionControl[].name,authorizationConfig[].type,authorizationConfig[].name}",
	"cluster.apiServer.admissionControl[].configuration." + podSecurity,
	"cluster.apiServer.auditPolicy." + auditPolicy,
	"cluster.proxy.mode",
	"cluster.discovery.registries.service.endpoint",
	"cluster.etcd.{subnet,advertisedSubnets[],listenSubnets[]}",
	"cluster.{extraManifests[],externalCloudProvider.manifests[]}",
	"cluster.inlineManifests[].name",
	"cluster.adminKubeconfig.certLifetime",
}

// Kubernetes' own configuration formats that Talos embeds free-form (meta.Unstructured): the
// PodSecurity admission configuration (pod-security.admission.config.k8s.io) and the audit
// policy (audit.k8s.io). Neither format has a field for a credential.
const (
	podSecurity = "{apiVersion,kind,defaults.*,exemptions.namespaces[],exemptions.runtimeClasses[],exemptions.usernames[]}"
	auditPolicy = "{apiVersion,kind,omitStages[],rules[].level,rules[].verbs[],rules[].users[],rules[].userGroups[],rules[].namespaces[]," +
		"rules[].nonResourceURLs[],rules[].omitStages[],rules[].resources[].group,rules[].resources[].resources[],rules[].resources[].resourceNames[]}"
)

// kindFields lists, per multi-document kind talforge emits or its users commonly patch, the
// fields shown besides the universal ones. A kind listed with no fields was reviewed and
// shows nothing else (its content is free-form or secret). A function, not a map variable: the
// map is needed only to compile the tries, and a package-level map literal would be built at
// every start-up (issue 16).
func kindFields() map[string][]string {
	return map[string][]string{
		// network
		"HostnameConfig":  {"hostname", "auto"},
		"LinkAliasConfig": {"selector.match"},
		"LinkConfig":      {"mtu", "addresses[].{address,routePriority}", "routes[].{destination,gateway,source,metric,mtu,table}"},
		"Layer2VIPConfig": {"link"},
		"ResolverConfig":  {"nameservers[].{address,protocol,tlsServerName}", "searchDomains.domains[]"},
		"TimeSyncConfig":  {"bootTimeout", "ntp.servers[]", "ptp.devices[]"},

		// storage and install
		"UnattendedInstallConfig": {"installer.image", "provisioning.diskSelector.match"},
		"UserVolumeConfig": {
			"volumeType", "provisioning.{diskSelector.match,minSize,maxSize}", "filesystem.{type,xfs.minAllocationGroupSize}",
			"encryption.{provider,cipher,keySize,blockSize,options[],keys[].slot,keys[].kms.endpoint,keys[].tpm.options.pcrs[]}",
			"{trim,scrub}.interval",
		},
		"VolumeConfig": {
			"provisioning.{diskSelector.match,minSize,maxSize}", "filesystem.xfs.minAllocationGroupSize",
			"encryption.{provider,cipher,keySize,blockSize,options[],keys[].slot,keys[].kms.endpoint,keys[].tpm.options.pcrs[]}",
			"{trim,scrub}.interval",
		},
		"FilesystemTrimConfig": {"interval"},

		// cluster and discovery
		"DiscoveryServiceConfig":  {"endpoint"},
		"DiscoveryIdentityConfig": {"clusterID"},
		"SecurityProfileConfig":   nil,

		// Kubernetes (Talos ≥ 1.14)
		"KubeClusterConfig":           {"clusterName", "endpoint"},
		"KubeNodeConfig":              {"nodeIP.validSubnets[]", "{labels,annotations,taints}.*"},
		"KubeletConfig":               {"image", "clusterDNS[]"},
		"KubeNetworkConfig":           {"dnsDomain", "podSubnets[]", "serviceSubnets[]", "nodeCIDRMaskSizeIPv4", "nodeCIDRMaskSizeIPv6"},
		"KubeAPIServerCAConfig":       {"issuingCA.cert", "acceptedCAs[]"},
		"KubeAggregatorCAConfig":      {"issuingCA.cert", "acceptedCAs[]"},
		"KubePrismConfig":             {"port", "tlsServerName"},
		"KubeAdmissionControlConfig":  {"configuration." + podSecurity},
		"KubeAuditPolicyConfig":       {"configuration." + auditPolicy},
		"KubeAuthenticationConfig":    {"configuration.{apiVersion,kind,anonymous.conditions[].path,jwt[].issuer.url,jwt[].issuer.audiences[]}"},
		"KubeAuthorizerConfig":        {"type"},
		"KubeEtcdEncryptionConfig":    {"config.{apiVersion,kind,resources[].resources[],resources[].providers[].*.keys[].name}"},
		"KubeServiceAccountConfig":    {"issuer.issuerURL", "accepted.{publicKeys[],issuers[],audiences[]}"},
		"KubeAPIServerConfig":         {"image", "apiPort", "certExtraSANs[]", "resources.{requests,limits}.*"},
		"KubeControllerManagerConfig": {"image", "resources.{requests,limits}.*"},
		"KubeSchedulerConfig":         {"image", "resources.{requests,limits}.*"},
		"KubeProxyConfig":             {"image", "mode", "resources.{requests,limits}.*"},
		"KubeFlannelCNIConfig":        {"backendType", "backendPort", "backendMTU", "resources.{requests,limits}.*"},
		"KubeCoreDNSConfig":           {"image"},
		"KubeInlineManifestConfig":    nil,
		"KubeExternalManifestConfig":  {"url"},

		// registries, runtime
		"RegistryMirrorConfig":   {"endpoints[].url"},
		"RegistryTLSConfig":      {"clientIdentity.cert", "ca"},
		"RegistryAuthConfig":     nil,
		"TrustedRootsConfig":     {"certificates"},
		"ExtensionServiceConfig": {"configFiles[].mountPath"},
		"EnvironmentConfig":      nil,
	}
}

// The compiled allow-lists are built on first use, not at package initialisation: most
// commands never redact anything, and start-up must not pay for the tries (issue 16).
var (
	v1alpha1Doc = sync.OnceValue(func() *trie { return compile(v1alpha1Patterns...) })
	kinds       = sync.OnceValue(compileKinds)
	unknownKind = sync.OnceValue(func() *trie { return compile(universal...) })
)

func compileKinds() map[string]*trie {
	byKind := kindFields()
	out := make(map[string]*trie, len(byKind))

	for kind, fields := range byKind {
		out[kind] = compile(append(append([]string{}, universal...), fields...)...)
	}

	return out
}

package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// CreationPolicy says how the operator owns the target Secret.
// +kubebuilder:validation:Enum=Owner;Orphan;Merge;None
type CreationPolicy string

const (
	// CreatePolicyOwner creates the Secret with the CofferSecret as its
	// controller owner reference.
	CreatePolicyOwner CreationPolicy = "Owner"
	// CreatePolicyOrphan creates the Secret without an owner reference.
	CreatePolicyOrphan CreationPolicy = "Orphan"
	// CreatePolicyMerge only adds or updates keys of an existing Secret
	// and never creates one.
	CreatePolicyMerge CreationPolicy = "Merge"
	// CreatePolicyNone writes no Secret (the status still reports the sync).
	CreatePolicyNone CreationPolicy = "None"
)

// DeletionPolicy says what happens to the target Secret when the remote
// secret disappears or the CofferSecret is deleted.
// +kubebuilder:validation:Enum=Retain;Delete
type DeletionPolicy string

const (
	// DeletionPolicyRetain keeps the Secret. When the CofferSecret is
	// deleted, a finalizer first removes its owner reference, so garbage
	// collection cannot delete the Secret.
	DeletionPolicyRetain DeletionPolicy = "Retain"
	// DeletionPolicyDelete deletes the Secret (never one it only merged
	// keys into).
	DeletionPolicyDelete DeletionPolicy = "Delete"
)

// SecretSpec describes one native Secret and where its values come from.
// ESO: ExternalSecret.spec.
type SecretSpec struct {
	// RefreshInterval is the safety-net resync period; changes made in
	// Coffer arrive at once through the server's event stream. "0s": sync
	// only when the CofferSecret changes or an event arrives. Empty: 1h.
	// +kubebuilder:default="1h"
	// +optional
	RefreshInterval *metav1.Duration `json:"refreshInterval,omitempty"`

	// SecretStoreRef names the CofferStore or ClusterCofferStore.
	SecretStoreRef SecretStoreRef `json:"secretStoreRef"`

	// Target describes the Secret to write.
	// +optional
	Target Target `json:"target,omitempty"`

	// Data maps single remote values to Secret keys.
	// +optional
	Data []Data `json:"data,omitempty"`

	// DataFrom adds every key of whole remote secrets.
	// +optional
	DataFrom []DataFrom `json:"dataFrom,omitempty"`
}

// SecretStoreRef names a store.
type SecretStoreRef struct {
	// Name of the store.
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`

	// Kind of the store. Empty: CofferStore.
	// +kubebuilder:validation:Enum=CofferStore;ClusterCofferStore
	// +kubebuilder:default=CofferStore
	// +optional
	Kind string `json:"kind,omitempty"`
}

// Target describes the native Secret.
type Target struct {
	// Name of the Secret. Empty: the CofferSecret's name.
	// +optional
	Name string `json:"name,omitempty"`

	// CreationPolicy: Owner (default), Orphan, Merge or None.
	// +kubebuilder:default=Owner
	// +optional
	CreationPolicy CreationPolicy `json:"creationPolicy,omitempty"`

	// DeletionPolicy: Retain (default) or Delete. Unlike ESO's, it covers
	// both the remote secret disappearing and the CofferSecret's deletion.
	// +kubebuilder:default=Retain
	// +optional
	DeletionPolicy DeletionPolicy `json:"deletionPolicy,omitempty"`

	// Template shapes the Secret. Empty: the fetched keys as they are.
	// +optional
	Template *Template `json:"template,omitempty"`
}

// Template shapes the target Secret.
type Template struct {
	// Type of the Secret, e.g. kubernetes.io/basic-auth. Empty: Opaque.
	// +optional
	Type string `json:"type,omitempty"`

	// Metadata adds labels and annotations to the Secret.
	// +optional
	Metadata TemplateMetadata `json:"metadata,omitempty"`

	// Data maps Secret keys to Go templates over the fetched keys
	// ({{ .password }}), with ESO's common functions. When Data is set,
	// only its keys are written.
	// +optional
	Data map[string]string `json:"data,omitempty"`
}

// TemplateMetadata holds labels and annotations for the target Secret.
type TemplateMetadata struct {
	// +optional
	Labels map[string]string `json:"labels,omitempty"`
	// +optional
	Annotations map[string]string `json:"annotations,omitempty"`
}

// Data maps one remote value to one Secret key.
type Data struct {
	// SecretKey is the key in the Secret (and the template's variable).
	// +kubebuilder:validation:MinLength=1
	SecretKey string `json:"secretKey"`

	// RemoteRef says which remote value.
	RemoteRef RemoteRef `json:"remoteRef"`
}

// RemoteRef points at a remote value.
type RemoteRef struct {
	// Key is the secret's path relative to the store's path ("app/db").
	// +kubebuilder:validation:MinLength=1
	Key string `json:"key"`

	// Property is one field of the secret. Empty: the whole secret as JSON.
	// +optional
	Property string `json:"property,omitempty"`

	// Version of a KV v2 secret. Empty: the latest.
	// +optional
	Version string `json:"version,omitempty"`
}

// DataFrom adds many keys at once. Exactly one field is set.
// +kubebuilder:validation:MinProperties=1
// +kubebuilder:validation:MaxProperties=1
type DataFrom struct {
	// Extract adds every field of one remote secret as a key.
	// +optional
	Extract *ExtractRef `json:"extract,omitempty"`

	// Dynamic calls an endpoint that generates a secret, such as
	// database/creds/<role>, and adds every field of its data. ESO: a
	// VaultDynamicSecret generator referenced by sourceRef.generatorRef.
	// +optional
	Dynamic *DynamicRef `json:"dynamic,omitempty"`
}

// ExtractRef is one remote secret whose fields all become keys.
type ExtractRef struct {
	// Key is the secret's path relative to the store's path.
	// +kubebuilder:validation:MinLength=1
	Key string `json:"key"`

	// Version of a KV v2 secret. Empty: the latest.
	// +optional
	Version string `json:"version,omitempty"`
}

// DynamicRef is a generating endpoint.
type DynamicRef struct {
	// Path is the full logical path ("database/creds/app"), not relative to
	// the store's path.
	// +kubebuilder:validation:MinLength=1
	Path string `json:"path"`

	// Method is GET, POST or PUT. Empty: GET.
	// +kubebuilder:validation:Enum=GET;POST;PUT
	// +optional
	Method string `json:"method,omitempty"`

	// Parameters are sent as the JSON body (POST, PUT).
	// +optional
	Parameters map[string]string `json:"parameters,omitempty"`
}

// SecretStatus is the outcome of the last sync.
type SecretStatus struct {
	// Conditions holds the Ready condition. Its reason is one of
	// SecretSynced, SecretSyncedError, StoreNotFound, RemoteSecretNotFound,
	// RemoteSecretDeleted, TemplateError, TargetMissing.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// RefreshTime is when the values were last fetched and written.
	// +optional
	RefreshTime metav1.Time `json:"refreshTime,omitempty"`

	// SyncedResourceVersion is the CofferSecret's generation and a hash of
	// its labels and annotations at the last successful sync.
	// +optional
	SyncedResourceVersion string `json:"syncedResourceVersion,omitempty"`

	// Leases are the current leases of the dataFrom[].dynamic sources,
	// renewed while the CofferSecret exists and replaced before their max
	// TTL ends.
	// +optional
	Leases []DynamicLease `json:"leases,omitempty"`

	// PreviousLeases were replaced by a rotation. Each is kept (and renewed)
	// until every workload annotated coffer.dev/reload with the target
	// Secret has rolled out the new credentials, or until its max TTL ends,
	// and then revoked.
	// +optional
	PreviousLeases []DynamicLease `json:"previousLeases,omitempty"`
}

// DynamicLease is the lease of the credentials one dataFrom[].dynamic
// source generated. Times are the operator's clock; durations are whole
// seconds, as in Vault's API.
type DynamicLease struct {
	// Index of the dataFrom entry.
	Index int `json:"index"`

	// Path the credentials were generated from.
	Path string `json:"path"`

	// LeaseID is the server's lease_id.
	LeaseID string `json:"leaseID"`

	// IssueTime is when the lease was created.
	IssueTime metav1.Time `json:"issueTime"`

	// RenewTime is when the lease was last renewed (its issue time when
	// never).
	// +optional
	RenewTime metav1.Time `json:"renewTime,omitempty"`

	// LeaseDuration is the lease_duration (seconds) granted at RenewTime.
	LeaseDuration int64 `json:"leaseDuration"`

	// MaxTTL (seconds from IssueTime) is the longest the lease can live.
	// 0: unknown (the server did not cap a renewal).
	// +optional
	MaxTTL int64 `json:"maxTTL,omitempty"`

	// Renewable is the lease's renewable flag.
	// +optional
	Renewable bool `json:"renewable,omitempty"`
}

// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:categories=coffer,shortName=csec
// +kubebuilder:printcolumn:name="Store",type=string,JSONPath=`.spec.secretStoreRef.name`
// +kubebuilder:printcolumn:name="Refresh",type=string,JSONPath=`.spec.refreshInterval`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`

// CofferSecret keeps one native Secret in step with values in Coffer.
// ESO: ExternalSecret.
type CofferSecret struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   SecretSpec   `json:"spec"`
	Status SecretStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// CofferSecretList is a list of CofferSecrets.
type CofferSecretList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []CofferSecret `json:"items"`
}

// ClusterSecretSpec stamps one CofferSecret into many namespaces.
// ESO: ClusterExternalSecret.spec (externalSecretSpec → cofferSecretSpec,
// externalSecretName → cofferSecretName,
// externalSecretMetadata → cofferSecretMetadata).
type ClusterSecretSpec struct {
	// CofferSecretSpec is the spec of every CofferSecret created.
	CofferSecretSpec SecretSpec `json:"cofferSecretSpec"`

	// CofferSecretName names the CofferSecrets. Empty: this object's name.
	// +optional
	CofferSecretName string `json:"cofferSecretName,omitempty"`

	// CofferSecretMetadata adds labels and annotations to them.
	// +optional
	CofferSecretMetadata TemplateMetadata `json:"cofferSecretMetadata,omitempty"`

	// NamespaceSelectors select namespaces by label; a namespace matching
	// any of them gets a CofferSecret.
	// +optional
	NamespaceSelectors []*metav1.LabelSelector `json:"namespaceSelectors,omitempty"`

	// Namespaces are added by name.
	// +optional
	Namespaces []string `json:"namespaces,omitempty"`

	// RefreshTime is how often namespaces are re-listed. Empty: 1m.
	// +optional
	RefreshTime *metav1.Duration `json:"refreshTime,omitempty"`
}

// NamespaceFailure is one namespace the CofferSecret could not be written to.
type NamespaceFailure struct {
	Namespace string `json:"namespace"`
	// +optional
	Reason string `json:"reason,omitempty"`
}

// ClusterSecretStatus reports where the CofferSecrets exist.
type ClusterSecretStatus struct {
	// CofferSecretName is the name of the CofferSecrets created.
	// +optional
	CofferSecretName string `json:"cofferSecretName,omitempty"`
	// +optional
	ProvisionedNamespaces []string `json:"provisionedNamespaces,omitempty"`
	// +optional
	FailedNamespaces []NamespaceFailure `json:"failedNamespaces,omitempty"`
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,categories=coffer,shortName=ccsec
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`

// ClusterCofferSecret creates the same CofferSecret in every selected
// namespace. ESO: ClusterExternalSecret.
type ClusterCofferSecret struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   ClusterSecretSpec   `json:"spec"`
	Status ClusterSecretStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// ClusterCofferSecretList is a list of ClusterCofferSecrets.
type ClusterCofferSecretList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ClusterCofferSecret `json:"items"`
}

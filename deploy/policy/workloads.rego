# Rules every workload of deploy/ must follow, checked on the rendered overlays and on the run Job
# that dagster-k8s builds (tests/test_deploy.py, with regopy). The same file works with conftest:
#   kubectl kustomize deploy/overlays/prod | conftest test --namespace seedtest.workloads -p deploy/policy -
# Input: one Kubernetes object. Output: `deny`, a set of messages; empty means compliant.
package seedtest.workloads

import rego.v1

pod_kinds := {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}

pod_spec := input.spec.template.spec if input.kind in pod_kinds

pod_spec := input.spec.jobTemplate.spec.template.spec if input.kind == "CronJob"

pod_spec := input.spec if input.kind == "Pod"

regular_containers contains c if some c in pod_spec.containers

init_containers contains c if some c in pod_spec.initContainers

all_containers := regular_containers | init_containers

workload := sprintf("%s/%s", [input.kind, input.metadata.name])

# --- images: an exact version, never a moving tag -----------------------------------------------

# The tag of "registry:5000/path/name:tag" is after the last ":" of the last path segment.
image_tag(image) := tag if {
	segments := split(image, "/")
	name_and_tag := split(segments[count(segments) - 1], ":")
	count(name_and_tag) == 2
	tag := name_and_tag[1]
}

pinned(image) if contains(image, "@sha256:")

pinned(image) if regex.match(`^v?[0-9]+\.[0-9]+\.[0-9]+([-+.][0-9A-Za-z.+-]+)?$`, image_tag(image))

deny contains msg if {
	some c in all_containers
	not pinned(c.image)
	msg := sprintf("%s: container %s: image %s is not pinned to an exact version (missing, latest or floating tag)", [workload, c.name, c.image])
}

# Our own image: <component>:<semver>-<git short sha>, so a tag names one commit.
deny contains msg if {
	some c in all_containers
	segments := split(c.image, "/")
	startswith(segments[count(segments) - 1], "seedtest-pipeline:")
	not regex.match(`^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.]+)?-[0-9a-f]{7,40}$`, image_tag(c.image))
	msg := sprintf("%s: container %s: image %s is not tagged <semver>-<git short sha>", [workload, c.name, c.image])
}

# --- resources ------------------------------------------------------------------------------------

required_resources := [["requests", "cpu"], ["requests", "memory"], ["limits", "memory"]]

deny contains msg if {
	some c in all_containers
	some [kind, resource] in required_resources
	not c.resources[kind][resource]
	msg := sprintf("%s: container %s has no resources.%s.%s", [workload, c.name, kind, resource])
}

# --- security context -----------------------------------------------------------------------------

runs_as_non_root(c) if c.securityContext.runAsNonRoot == true

runs_as_non_root(c) if {
	pod_spec.securityContext.runAsNonRoot == true
	not c.securityContext.runAsNonRoot == false
}

deny contains msg if {
	some c in all_containers
	not runs_as_non_root(c)
	msg := sprintf("%s: container %s may run as root (runAsNonRoot is not true)", [workload, c.name])
}

deny contains msg if {
	some c in all_containers
	not c.securityContext.allowPrivilegeEscalation == false
	msg := sprintf("%s: container %s allows privilege escalation (allowPrivilegeEscalation is not false)", [workload, c.name])
}

deny contains msg if {
	some c in all_containers
	not c.securityContext.readOnlyRootFilesystem == true
	msg := sprintf("%s: container %s has a writable root filesystem (readOnlyRootFilesystem is not true)", [workload, c.name])
}

# --- restartPolicy Always: only for native sidecars (init containers) ---------------------------

deny contains msg if {
	some c in regular_containers
	c.restartPolicy == "Always"
	msg := sprintf("%s: container %s sets restartPolicy Always, which only an init container (a native sidecar) may", [workload, c.name])
}

deny contains msg if {
	input.kind in {"Job", "CronJob"}
	pod_spec.restartPolicy == "Always"
	msg := sprintf("%s: a Job's pods must not restart Always (Never or OnFailure)", [workload])
}

"""Stand-in for net-istio and Istio's gateways (neither can be built here): pure logic, no I/O.

- net-istio's part: a Knative `Ingress` (KIngress, networking.internal.knative.dev/v1alpha1) of the Istio
  class gets the status net-istio 1.16 writes once its VirtualServices are programmed
  (`kingress_status`), and its rules become the routes net-istio would program into Istio
  (`kingress_routes`: one route per rule path, bound to the ingress gateway for ExternalIP rules and to
  the local gateway for ClusterLocal ones, authority prefix match, splits by weight with their
  appendHeaders, path appendHeaders, rewriteHost).
- Istio's part: VirtualServices bound to the two Knative gateways (`virtual_service_routes`, what KServe
  writes per InferenceService) and the gateways' request routing (`dispatch`): Host → virtual service →
  first matching HTTP route → a destination drawn by weight → header operations and rewrites → either the
  other gateway again (destination is a gateway's Service) or a ready endpoint of the destination Service,
  from its EndpointSlices (`ClusterView`).

What it does not do: TLS/mTLS, retries, timeouts per route, mirroring, fault injection, Envoy filters.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

# (group, version, plural, namespaced), as platform_status.py names kinds
KINGRESSES = ("networking.internal.knative.dev", "v1alpha1", "ingresses", True)
VIRTUAL_SERVICES = ("networking.istio.io", "v1beta1", "virtualservices", True)

ISTIO_CLASS = "istio.ingress.networking.knative.dev"
CLASS_ANNOTATION = "networking.knative.dev/ingress.class"
INGRESS_GATEWAY = "knative-serving/knative-ingress-gateway"
LOCAL_GATEWAY = "knative-serving/knative-local-gateway"
CLUSTER_DOMAIN = "cluster.local"
# net-istio's config-istio defaults: each gateway's Service, which the status names and destinations use
GATEWAY_SERVICES = {
    f"istio-ingressgateway.istio-system.svc.{CLUSTER_DOMAIN}": INGRESS_GATEWAY,
    f"knative-local-gateway.istio-system.svc.{CLUSTER_DOMAIN}": LOCAL_GATEWAY,
}
GATEWAY_SERVICE = {gateway: host for host, gateway in GATEWAY_SERVICES.items()}
MAX_HOPS = 4  # gateway → gateway hops before giving up (a VirtualService pointing at itself)


# ----- net-istio: which KIngresses, and their status ------------------------------------------------------
def default_ingress_class(config_network: dict | None) -> str:
    """config-network's `ingress-class` (or the older `ingress.class`), else Knative's default."""
    data = (config_network or {}).get("data") or {}
    return data.get("ingress-class") or data.get("ingress.class") or ISTIO_CLASS


def is_istio_class(kingress: dict, default_class: str = ISTIO_CLASS) -> bool:
    annotations = kingress["metadata"].get("annotations") or {}
    return annotations.get(CLASS_ANNOTATION, default_class) == ISTIO_CLASS


def kingress_status(kingress: dict) -> dict:
    """The status net-istio writes once the KIngress's VirtualServices are programmed (no probing here:
    the routes are live as soon as this process has them). Conditions without lastTransitionTime."""
    ready = [{"type": t, "status": "True"} for t in ("LoadBalancerReady", "NetworkConfigured", "Ready")]
    return {
        "observedGeneration": kingress["metadata"].get("generation", 1),
        "conditions": ready,
        "publicLoadBalancer": {"ingress": [{"domainInternal": GATEWAY_SERVICE[INGRESS_GATEWAY]}]},
        "privateLoadBalancer": {"ingress": [{"domainInternal": GATEWAY_SERVICE[LOCAL_GATEWAY]}]},
    }


# ----- the routing model (Istio's HTTPRoute, reduced) ----------------------------------------------------
@dataclass(frozen=True)
class StringMatch:
    kind: str  # exact | prefix | regex
    value: str

    @classmethod
    def parse(cls, spec: dict | None) -> StringMatch | None:
        for kind in ("exact", "prefix", "regex"):
            if spec and kind in spec:
                return cls(kind, spec[kind])
        return None

    def matches(self, text: str) -> bool:
        if self.kind == "exact":
            return text == self.value
        if self.kind == "prefix":
            return text.startswith(self.value)
        return re.fullmatch(self.value, text) is not None  # Envoy's safe_regex: the whole value


@dataclass(frozen=True)
class Match:
    gateways: frozenset[str] = frozenset()  # empty: the VirtualService's gateways
    authority: StringMatch | None = None
    uri: StringMatch | None = None
    headers: tuple[tuple[str, StringMatch], ...] = ()

    def applies(self, gateway: str, authority: str, path: str, headers: dict[str, str]) -> bool:
        if self.gateways and gateway not in self.gateways:
            return False
        if self.authority and not self.authority.matches(authority):
            return False
        if self.uri and not self.uri.matches(path if self.uri.kind == "prefix" else path.split("?", 1)[0]):
            return False
        return all(name in headers and m.matches(headers[name]) for name, m in self.headers)


@dataclass(frozen=True)
class HeaderOps:
    set: tuple[tuple[str, str], ...] = ()
    add: tuple[tuple[str, str], ...] = ()
    remove: tuple[str, ...] = ()

    @classmethod
    def parse(cls, spec: dict | None) -> HeaderOps:
        request = (spec or {}).get("request") or {}
        return cls(
            tuple(sorted((request.get("set") or {}).items())),
            tuple(sorted((request.get("add") or {}).items())),
            tuple(request.get("remove") or ()),
        )

    def apply(self, headers: dict[str, str]) -> None:
        for name in self.remove:
            headers.pop(name.lower(), None)
        for name, value in self.set:
            headers[name.lower()] = value
        for name, value in self.add:
            key = name.lower()
            headers[key] = f"{headers[key]},{value}" if key in headers else value


@dataclass(frozen=True)
class Destination:
    host: str
    port: int | str | None
    weight: int
    headers: HeaderOps = HeaderOps()


@dataclass(frozen=True)
class HttpRoute:
    matches: tuple[Match, ...]  # empty: every request
    destinations: tuple[Destination, ...]
    headers: HeaderOps = HeaderOps()
    rewrite_authority: str = ""
    rewrite_uri: str = ""


@dataclass(frozen=True)
class VirtualHost:
    """One VirtualService (or what net-istio makes of one KIngress) as the gateways see it."""

    source: str  # "virtualservice NS/NAME" or "kingress NS/NAME"
    namespace: str
    hosts: tuple[str, ...]
    gateways: frozenset[str]
    http: tuple[HttpRoute, ...]
    created: str = ""

    def serves(self, gateway: str, host: str) -> bool:
        return gateway in self.gateways and any(_host_matches(pattern, host) for pattern in self.hosts)


def _host_matches(pattern: str, host: str) -> bool:
    pattern = pattern.lower()
    if pattern == "*":
        return True
    if pattern.startswith("*."):
        return host.endswith(pattern[1:])
    return host == pattern


# ----- net-istio: KIngress → routes ----------------------------------------------------------------------
def expanded_hosts(hosts: Iterable[str]) -> set[str]:
    """A cluster-local host NAME.NS.svc.cluster.local also answers as NAME.NS.svc and NAME.NS."""
    suffix = f".svc.{CLUSTER_DOMAIN}"
    out = set()
    for host in hosts:
        out.add(host)
        if host.endswith(suffix):
            short = host.removesuffix(suffix)
            out.update({short, f"{short}.svc"})
    return out


def _host_prefix(host: str) -> str:
    return host.removesuffix(f".svc.{CLUSTER_DOMAIN}")


def _visibility_gateway(visibility: str | None) -> str:
    return LOCAL_GATEWAY if visibility == "ClusterLocal" else INGRESS_GATEWAY


def kingress_routes(kingress: dict) -> VirtualHost:
    """What net-istio programs for one KIngress: one HTTP route per rule path."""
    meta, spec = kingress["metadata"], kingress.get("spec") or {}
    rules = spec.get("rules") or []
    http = [
        _kingress_path_route(path, rule, meta["namespace"])
        for rule in rules
        for path in (rule.get("http") or {}).get("paths") or []
    ]
    all_hosts = [h for rule in rules for h in rule.get("hosts") or []]
    return VirtualHost(
        source=f"kingress {meta['namespace']}/{meta['name']}",
        namespace=meta["namespace"],
        hosts=tuple(sorted(expanded_hosts(all_hosts))),
        gateways=frozenset({_visibility_gateway(r.get("visibility")) for r in rules}),
        http=tuple(http),
        created=meta.get("creationTimestamp") or "",
    )


def _kingress_path_route(path: dict, rule: dict, namespace: str) -> HttpRoute:
    gateway = frozenset({_visibility_gateway(rule.get("visibility"))})
    headers = tuple(
        sorted(
            (name.lower(), StringMatch("exact", (m or {}).get("exact", "")))
            for name, m in (path.get("headers") or {}).items()
        )
    )
    uri = StringMatch("prefix", path["path"]) if path.get("path") else None
    prefixes = sorted({_host_prefix(h) for h in rule.get("hosts") or []})
    splits = path.get("splits") or []
    return HttpRoute(
        matches=tuple(Match(gateway, StringMatch("prefix", p), uri, headers) for p in prefixes),
        destinations=tuple(_split_destination(s, namespace, len(splits) == 1) for s in splits),
        headers=_set_headers(path.get("appendHeaders")),
        rewrite_authority=path.get("rewriteHost") or "",
    )


def _split_destination(split: dict, namespace: str, only: bool) -> Destination:
    service_namespace = split.get("serviceNamespace") or namespace
    return Destination(
        host=f"{split['serviceName']}.{service_namespace}.svc.{CLUSTER_DOMAIN}",
        port=split.get("servicePort"),
        weight=int(split.get("percent", 100 if only else 0)),
        headers=_set_headers(split.get("appendHeaders")),
    )


def _set_headers(headers: dict | None) -> HeaderOps:
    return HeaderOps(set=tuple(sorted((headers or {}).items())))


# ----- Istio: VirtualService → routes --------------------------------------------------------------------
def _qualified_gateway(name: str, namespace: str) -> str:
    return name if "/" in name or name == "mesh" else f"{namespace}/{name}"


def virtual_service_routes(vs: dict) -> VirtualHost:
    meta, spec = vs["metadata"], vs.get("spec") or {}
    namespace = meta["namespace"]
    http = []
    for route in spec.get("http") or []:
        matches = tuple(
            Match(
                frozenset(_qualified_gateway(g, namespace) for g in m.get("gateways") or ()),
                StringMatch.parse(m.get("authority")),
                StringMatch.parse(m.get("uri")),
                tuple(
                    sorted(
                        (name.lower(), sm)
                        for name, spec_ in (m.get("headers") or {}).items()
                        if (sm := StringMatch.parse(spec_))
                    )
                ),
            )
            for m in route.get("match") or []
        )
        destinations = tuple(
            Destination(
                d["destination"]["host"],
                (d["destination"].get("port") or {}).get("number"),
                int(d.get("weight", 100 if len(route.get("route")) == 1 else 0)),
                HeaderOps.parse(d.get("headers")),
            )
            for d in route.get("route") or []
        )
        rewrite = route.get("rewrite") or {}
        http.append(
            HttpRoute(
                matches,
                destinations,
                HeaderOps.parse(route.get("headers")),
                rewrite.get("authority") or "",
                rewrite.get("uri") or "",
            )
        )
    return VirtualHost(
        source=f"virtualservice {namespace}/{meta['name']}",
        namespace=namespace,
        hosts=tuple(spec.get("hosts") or ()),
        gateways=frozenset(_qualified_gateway(g, namespace) for g in spec.get("gateways") or ()),
        http=tuple(http),
        created=meta.get("creationTimestamp") or "",
    )


@dataclass(frozen=True)
class RoutingTable:
    virtual_hosts: tuple[VirtualHost, ...] = ()

    @classmethod
    def build(
        cls, kingresses: Iterable[dict], virtual_services: Iterable[dict], default_class: str = ISTIO_CLASS
    ) -> RoutingTable:
        hosts = [kingress_routes(k) for k in kingresses if is_istio_class(k, default_class)]
        hosts += [virtual_service_routes(v) for v in virtual_services]
        # Istio merges VirtualServices of one host in creation order
        return cls(tuple(sorted(hosts, key=lambda v: (v.created, v.source))))

    def route(self, gateway: str, authority: str, path: str, headers: dict[str, str]):
        """(virtual host, route, the uri match that applied) of the first route matching, else None."""
        host = authority.rsplit(":", 1)[0].lower() if not authority.startswith("[") else authority
        for vhost in self.virtual_hosts:
            if not vhost.serves(gateway, host):
                continue
            for route in vhost.http:
                if not route.matches:
                    return vhost, route, None
                for match in route.matches:  # a match without gateways: the VirtualService's (served)
                    if match.applies(gateway, authority, path, headers):
                        return vhost, route, match.uri
        return None

    def describe(self) -> list[dict]:
        """The table as JSON for /.simulator/routes."""
        return [
            {
                "source": v.source,
                "hosts": list(v.hosts),
                "gateways": sorted(v.gateways),
                "http": [_describe_route(r) for r in v.http],
            }
            for v in self.virtual_hosts
        ]


def _describe_match(m: Match) -> dict:
    out: dict = {"gateways": sorted(m.gateways)} if m.gateways else {}
    for name in ("authority", "uri"):
        if sm := getattr(m, name):
            out[name] = {sm.kind: sm.value}
    if m.headers:
        out["headers"] = {name: {sm.kind: sm.value} for name, sm in m.headers}
    return out


def _describe_route(r: HttpRoute) -> dict:
    out: dict = {
        "match": [_describe_match(m) for m in r.matches],
        "route": [
            {
                "host": d.host,
                "port": d.port,
                "weight": d.weight,
                **({"set": dict(d.headers.set)} if d.headers.set else {}),
            }
            for d in r.destinations
        ],
    }
    if r.headers.set:
        out["set"] = dict(r.headers.set)
    if r.rewrite_authority or r.rewrite_uri:
        out["rewrite"] = {k: v for k, v in (("authority", r.rewrite_authority), ("uri", r.rewrite_uri)) if v}
    return out


# ----- Services and their endpoints ----------------------------------------------------------------------
@dataclass
class ClusterView:
    """The Services and EndpointSlices the gateways resolve destinations with (an informer snapshot)."""

    services: dict[tuple[str, str], dict] = field(default_factory=dict)
    slices: dict[tuple[str, str], list[dict]] = field(default_factory=dict)

    @classmethod
    def of(cls, services: Iterable[dict], endpoint_slices: Iterable[dict]) -> ClusterView:
        view = cls()
        for svc in services:
            view.services[(svc["metadata"]["namespace"], svc["metadata"]["name"])] = svc
        for eps in endpoint_slices:
            owner = (eps["metadata"].get("labels") or {}).get("kubernetes.io/service-name")
            if owner:
                view.slices.setdefault((eps["metadata"]["namespace"], owner), []).append(eps)
        return view

    def service_of(self, host: str, namespace: str) -> dict | None:
        """The Service a destination host names: NAME.NS.svc.cluster.local, NAME.NS.svc, NAME.NS or NAME."""
        host = host.lower().removesuffix(f".{CLUSTER_DOMAIN}").removesuffix(".svc")
        name, _, ns = host.partition(".")
        return self.services.get((ns or namespace, name))

    def ready_endpoints(self, service: dict, port: int | str | None) -> list[tuple[str, int]]:
        """Ready (address, port) pairs behind one port of a Service, as kube-proxy picks them: the
        EndpointSlice port named like the Service port (targetPort already resolved by its controller)."""
        chosen = _service_port((service.get("spec") or {}).get("ports") or [], port)
        if chosen is None:
            return []
        name = chosen.get("name") or ""
        meta = service["metadata"]
        found = []
        for eps in self.slices.get((meta["namespace"], meta["name"]), []):
            numbers = [p.get("port") for p in eps.get("ports") or [] if (p.get("name") or "") == name]
            if not numbers or numbers[0] is None:
                continue
            for endpoint in eps.get("endpoints") or []:
                if (endpoint.get("conditions") or {}).get("ready") is False:
                    continue
                found += [(address, numbers[0]) for address in endpoint.get("addresses") or []]
        return sorted(set(found))


def _service_port(ports: list[dict], port: int | str | None) -> dict | None:
    """The Service port a destination names, by number or name; no port: the Service's only one."""
    if port is None:
        return ports[0] if len(ports) == 1 else None
    return next((p for p in ports if str(port) in (str(p.get("port")), p.get("name"))), None)


# ----- the gateways' request routing ---------------------------------------------------------------------
@dataclass(frozen=True)
class Forward:
    address: str
    port: int
    path: str
    headers: dict[str, str]  # lower-case names, the Host header included
    hops: tuple[str, ...]  # which virtual hosts routed it, for logs and tests


@dataclass(frozen=True)
class Reject:
    status: int
    body: bytes


NOT_FOUND = Reject(404, b"")
NO_HEALTHY_UPSTREAM = Reject(503, b"no healthy upstream")


def gateway_for_host(host: str) -> str:
    """The gateway a request on the single local port plays first: the local gateway for cluster hosts."""
    bare = host.rsplit(":", 1)[0].lower()
    return LOCAL_GATEWAY if bare.endswith((f".svc.{CLUSTER_DOMAIN}", ".svc")) else INGRESS_GATEWAY


def dispatch(
    table: RoutingTable,
    cluster: ClusterView,
    path: str,
    headers: dict[str, str],
    rng: random.Random | None = None,
) -> Forward | Reject:
    """Route one request arriving on the local port (headers: lower-case names, `host` included). The port
    plays both gateways: the one the Host suggests first, the other when that one has no route."""
    rng = rng or random.Random()
    first = gateway_for_host(headers.get("host", ""))
    second = LOCAL_GATEWAY if first == INGRESS_GATEWAY else INGRESS_GATEWAY
    answer = _through(table, cluster, first, path, dict(headers), rng, ())
    if answer is NOT_FOUND:
        answer = _through(table, cluster, second, path, dict(headers), rng, ())
    return answer


def _through(table, cluster, gateway, path, headers, rng, hops) -> Forward | Reject:
    found = table.route(gateway, headers.get("host", ""), path, headers)
    if found is None or len(hops) >= MAX_HOPS:
        return NOT_FOUND
    vhost, route, uri_match = found
    hops = (*hops, f"{gateway}: {vhost.source}")
    destination = _draw(route.destinations, rng)
    if destination is None:
        return NO_HEALTHY_UPSTREAM
    if route.rewrite_uri:
        path = _rewrite_uri(path, uri_match, route.rewrite_uri)
    if route.rewrite_authority:
        headers["host"] = route.rewrite_authority
    route.headers.apply(headers)
    destination.headers.apply(headers)
    host = destination.host.lower()
    if host in GATEWAY_SERVICES:
        return _through(table, cluster, GATEWAY_SERVICES[host], path, headers, rng, hops)
    service = cluster.service_of(host, vhost.namespace)
    if service is None:
        return NO_HEALTHY_UPSTREAM
    spec = service.get("spec") or {}
    if spec.get("type") == "ExternalName":
        external = (spec.get("externalName") or "").lower()
        if external in GATEWAY_SERVICES:
            return _through(table, cluster, GATEWAY_SERVICES[external], path, headers, rng, hops)
        return NO_HEALTHY_UPSTREAM
    endpoints = cluster.ready_endpoints(service, destination.port)
    if not endpoints:
        return NO_HEALTHY_UPSTREAM
    address, port = rng.choice(endpoints)
    return Forward(address, port, path, headers, hops)


def _draw(destinations: tuple[Destination, ...], rng: random.Random) -> Destination | None:
    weighted = [d for d in destinations if d.weight > 0]
    if not weighted:
        return None
    draw = rng.uniform(0, sum(d.weight for d in weighted))
    for destination in weighted:
        draw -= destination.weight
        if draw <= 0:
            return destination
    return weighted[-1]


def _rewrite_uri(path: str, match: StringMatch | None, replacement: str) -> str:
    if match is not None and match.kind == "prefix":
        return replacement + path[len(match.value) :]
    _, sep, query = path.partition("?")
    return replacement + sep + query

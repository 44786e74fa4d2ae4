"""The REST API: maggma ``Resource``s (FastAPI routers) and ``QueryOperator``s over the stores.

Built on :mod:`maggma.api`: every resource is a :class:`maggma.api.resource.Resource`, request
parameters are parsed by :class:`maggma.api.query_operator.QueryOperator`s (maggma's
``PaginationQuery`` for ``_page``/``_per_page``/``_skip``/``_limit``) and attached with
``attach_query_ops``; answers have maggma's ``{"data": [...], "meta": {...}}`` shape. maggma's
``ReadOnlyResource`` searches with MongoDB's aggregation pipeline, which the embedded store does
not have, so the searches here use the maggma ``Store`` interface (``count``/``query``) and run
on both store kinds.

GET only. Every filter is a named parameter with an allow-list or a plain value
(:mod:`atomate2_gmt.web.service`); an unknown parameter is refused with 400, a bad value with
422, an unknown key with 404, all with a message that says what is valid.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable
from typing import Any, Literal

from fastapi import HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field

with warnings.catch_warnings():  # maggma.api announces its move to emmet-api on import
    warnings.simplefilter("ignore", DeprecationWarning)
    from maggma.api.models import Response
    from maggma.api.query_operator import PaginationQuery, QueryOperator
    from maggma.api.resource import Resource
    from maggma.api.resource.utils import attach_query_ops
    from maggma.api.utils import STORE_PARAMS, merge_queries

from atomate2_gmt.query import (
    CRYSTAL_SYSTEMS,
    DFPT_FILTERS,
    PRESETS,
    CandidateQuery,
    missing_values,
)
from atomate2_gmt.schemas.fields import TASKS
from atomate2_gmt.web import records, service
from atomate2_gmt.web.common import (
    CODES,
    DFPT_PARTS,
    PREDICTION_STATES,
    NotFoundError,
)
from atomate2_gmt.web.figures import TensorPictures
from atomate2_gmt.web.service import WebStores

__all__ = [
    "CandidateResource",
    "CandidateSearch",
    "DFPTResource",
    "ModelResource",
    "TrainingQuery",
    "TrainingResource",
    "build_resources",
]

TaskName = Literal["dielectric", "dielectric_total", "piezo", "elastic"]
CrystalSystem = Literal[
    "triclinic", "monoclinic", "orthorhombic", "tetragonal", "trigonal", "hexagonal", "cubic"
]
assert set(TaskName.__args__) == set(TASKS)  # type: ignore[attr-defined]
assert set(CrystalSystem.__args__) == set(CRYSTAL_SYSTEMS)  # type: ignore[attr-defined]
PresetName = Literal["mp-piezo", "jarvis-piezo", "jarvis-dielectric", "riebesell-dielectric"]
assert set(PresetName.__args__) == set(PRESETS)  # type: ignore[attr-defined]
_PRESET_HELP = "A published selection rule (docs/screening.md, Presets): " + "; ".join(
    f"{p.name}: {p.description}" for p in PRESETS.values()
)

MAX_PER_PAGE = 500


def _param_names(op: QueryOperator) -> set[str]:
    """The query-string names an operator accepts (aliases where given)."""
    names = set()
    for name, p in inspect.signature(op.query).parameters.items():
        alias = getattr(p.default, "alias", None)
        names.add(alias or name)
    return names


def _check_params(request: Request, ops: list[QueryOperator], extra: tuple[str, ...] = ()) -> None:
    """400 for a query parameter no operator knows (as maggma's ReadOnlyResource does)."""
    allowed = set(extra).union(*(_param_names(op) for op in ops))
    unknown = sorted(k for k in request.query_params if k not in allowed)
    if unknown:
        raise HTTPException(
            status_code=400,
            detail=f"unknown query parameter(s) {', '.join(unknown)}; "
            f"valid: {', '.join(sorted(allowed))}",
        )


def _bad_value(exc: Exception) -> HTTPException:
    return HTTPException(status_code=422, detail=str(exc.args[0] if exc.args else exc))


def _not_found(exc: Exception) -> HTTPException:
    return HTTPException(status_code=404, detail=str(exc.args[0] if exc.args else exc))


# --------------------------------------------------------------------------------------------
# query operators
# --------------------------------------------------------------------------------------------


class CandidateSearch(QueryOperator):
    """The options of ``atomate2-gmt query`` as API parameters → one
    :class:`~atomate2_gmt.query.CandidateQuery`."""

    def query(
        self,
        prop: TaskName | None = Query(
            None, alias="property", description="The property (default: dielectric)."
        ),
        preset: PresetName | None = Query(
            None,
            description=_PRESET_HELP,
        ),
        sort: str | None = Query(
            None,
            description="A derived field of the property (dielectric_eig_max, dielectric_mean, "
            "dielectric_total_eig_max, dielectric_total_mean, e_ij_max, e_long_max, e_norm, "
            "K_VRH, G_VRH, AU); default: the property's headline field.",
        ),
        ascending: bool = Query(False, description="Smallest values first."),
        crystal_system: CrystalSystem | None = Query(None, description="One crystal system."),
        include_elements: str | None = Query(
            None, description="Comma-separated symbols a hit contains, e.g. O,Ti."
        ),
        exclude_elements: str | None = Query(
            None, description="Comma-separated symbols a hit does not contain, e.g. Pb,Cd."
        ),
        non_centrosymmetric: bool | None = Query(
            None, description="true: only non-centrosymmetric; false: only centrosymmetric."
        ),
        born_stable: bool = Query(False, description="Only Born-stable (predicted elastic)."),
        state: Literal["successful", "failed"] = Query(
            "successful", description="The property's prediction state."
        ),
        max_e_above_hull: float | None = Query(
            None, ge=0, description="eV/atom, on the candidate source's energy_above_hull."
        ),
        min_band_gap: float | None = Query(
            None, ge=0, description="eV, on the candidate source's band_gap."
        ),
        model_version: str | None = Query(None, description="Only this model version."),
        dfpt: Literal["accepted", "rejected", "failed", "none", "any"] | None = Query(
            None, description="DFPT status: an outcome, none (no DFPT yet) or any."
        ),
        include_metals: bool | None = Query(
            None,
            description="Keep metals (default: only for elastic; a metal has no meaningful "
            "dielectric or piezoelectric tensor). A source band gap > 0 is never a metal.",
        ),
        max_domain_distance: float | None = Query(
            None, gt=0, description="Keep crystals at most this far from the training data."
        ),
        top: int | None = Query(
            None,
            ge=1,
            le=MAX_PER_PAGE,
            description="The best `top` candidates (as `atomate2-gmt query --top`); instead of "
            "the paging parameters.",
        ),
    ) -> STORE_PARAMS:
        """Validated store query; 422 naming the bad value."""
        try:
            query = CandidateQuery.build(
                prop=prop or (None if preset else "dielectric"),
                preset=preset,
                sort=sort,
                ascending=ascending,
                crystal_system=crystal_system,
                include_elements=include_elements,
                exclude_elements=exclude_elements,
                non_centrosymmetric=non_centrosymmetric,
                born_stable=born_stable,
                state=state,
                max_e_above_hull=max_e_above_hull,
                min_band_gap=min_band_gap,
                model_version=model_version,
                dfpt=dfpt,
                include_metals=include_metals,
                max_domain_distance=max_domain_distance,
            )
        except ValueError as exc:
            raise _bad_value(exc) from None
        return {"filters": query, "top": top}  # type: ignore[dict-item]


assert set(DFPT_FILTERS) == {"accepted", "rejected", "failed", "none", "any"}
assert set(PREDICTION_STATES) == {"successful", "failed"}


class TrainingQuery(QueryOperator):
    """Filters of the training documents."""

    def query(
        self,
        task: TaskName | None = Query(None, description="Prediction task."),
        part: str | None = Query(None, description=f"DFPT part: {', '.join(DFPT_PARTS)}."),
        code: str | None = Query(None, description=f"DFPT code: {', '.join(CODES)}."),
        source: str | None = Query(None, description="e.g. dfpt_vasp."),
        structure_key: str | None = Query(None, description="The structure's key."),
    ) -> STORE_PARAMS:
        """Plain values only; unknown part/code → 422 (checked in the service)."""
        return {
            "filters": {  # type: ignore[dict-item]
                "task": task,
                "part": part,
                "code": code,
                "source": source,
                "structure_key": structure_key,
            }
        }


# --------------------------------------------------------------------------------------------
# response models (for the OpenAPI docs)
# --------------------------------------------------------------------------------------------


class CandidateRow(BaseModel):
    """One row of the ranked candidate table (derived fields of the property are extra keys)."""

    model_config = ConfigDict(extra="allow")

    rank: int
    prediction_id: str | None = None
    structure_key: str | None = None
    formula: str | None = None
    material_id: str | None = Field(None, description="The candidate source's id.")
    space_group: str | None = None
    space_group_number: int | None = None
    crystal_system: str | None = None
    point_group: str | None = None
    is_centrosymmetric: bool | None = None
    uncertainty: dict[str, float] = Field(
        default_factory=dict, description="Field → calibrated ensemble σ (same units)."
    )
    uncertainty_note: str | None = Field(
        None, description="'σ n/a (single model)' when no ensemble predicted."
    )
    state: str | None = None
    error: str | None = None
    band_gap: float | None = Field(None, description="eV, from the candidate source.")
    energy_above_hull: float | None = Field(
        None, description="eV/atom, from the candidate source (never predicted)."
    )
    mlip_energy_above_hull: float | None = Field(
        None, description="eV/atom, an MLIP estimate against the known phases (see stability)."
    )
    stability_source: str | None = Field(None, description="Where the stability value is from.")
    stability: str | None = Field(
        None, description="The stability value and its source, or 'unknown' (with 'hypothetical')."
    )
    hypothetical: bool | None = Field(None, description="A generated (substitution) crystal.")
    relaxed: str | None = Field(None, description="The potential that relaxed it, or None.")
    source: str | None = None
    nsites: int | None = None
    model_version: str | None = None
    likely_metal: bool | None = None
    likely_metal_reason: str | None = None
    domain_distance: float | None = Field(None, description="From the training data (1 = edge).")
    out_of_domain: bool | None = Field(None, description="domain_distance above 1.")
    dfpt_state: str | None = Field(None, description="accepted, rejected, failed or None.")


class Document(BaseModel):
    """A stored document (fields as stored)."""

    model_config = ConfigDict(extra="allow")


class ComparisonRow(BaseModel):
    """Prediction vs DFPT for one (candidate, task) (``atomate2_gmt.report``)."""

    model_config = ConfigDict(extra="allow")

    prediction_id: str
    formula: str | None = None
    task: str
    code: str | None = None
    fnorm: float = Field(description="Frobenius norm of the Voigt difference (tensor units).")
    rel_error: float
    units: str


class ModelRow(BaseModel):
    """A registered model version (without its config)."""

    model_config = ConfigDict(extra="allow")

    model_id: str
    task: str
    version: str
    promoted: bool


def _page(rows: list[dict[str, Any]], total: int, skip: int, limit: int) -> dict[str, Any]:
    return {
        "data": rows,
        "meta": {"total_doc": total, "skip": skip, "limit": limit, "max_limit": MAX_PER_PAGE},
    }


def _pagination(query: dict[str, Any]) -> tuple[int, int]:
    skip, limit = int(query.get("skip") or 0), int(query.get("limit") or 0)
    if limit <= 0:
        raise HTTPException(status_code=400, detail="_per_page / _limit must be positive")
    return skip, limit


class _ReadResource(Resource):
    """A GET-only maggma Resource: a search (query operators) and a get-by-key."""

    tag = ""

    def __init__(self, stores: WebStores, model: type[BaseModel]) -> None:
        self.stores = stores
        self.pagination = PaginationQuery(default_limit=20, max_limit=MAX_PER_PAGE)
        super().__init__(model)

    def _search(
        self, ops: list[QueryOperator], run: Callable[[dict[str, Any]], dict[str, Any]]
    ) -> Callable[..., dict[str, Any]]:
        def search(**queries: Any) -> dict[str, Any]:
            request: Request = queries.pop("request")
            queries.pop("temp_response", None)
            _check_params(request, ops)
            paging = sorted(p for p in ("_page", "_per_page", "_skip", "_limit")
                            if p in request.query_params)  # fmt: skip
            if "top" in request.query_params and paging:
                raise HTTPException(
                    status_code=400, detail=f"top cannot be combined with {', '.join(paging)}"
                )
            merged: dict[str, Any] = dict(merge_queries(list(queries.values())))  # type: ignore[arg-type]
            return run(merged)

        return attach_query_ops(search, ops)  # type: ignore[arg-type,return-value]


class CandidateResource(_ReadResource):
    """``/candidates/``: the ranked, filtered, paged table; one document; its structure and
    tensor pictures."""

    def __init__(self, stores: WebStores, pictures: TensorPictures) -> None:
        self.pictures = pictures
        super().__init__(stores, CandidateRow)

    def prepare_endpoint(self) -> None:
        """Routes: search, by key, structure, picture."""
        ops = [CandidateSearch(), self.pagination]
        store = self.stores.candidates

        def run(query: dict[str, Any]) -> dict[str, Any]:
            skip, limit = _pagination(query)
            if query.get("top") is not None:
                skip, limit = 0, int(query["top"])
            try:
                rows, total = service.candidate_page(
                    store, query["filters"], skip, limit, self.stores.counts
                )
                left_out = missing_values(store, query["filters"], self.stores.counts.count_each)
            except ValueError as exc:
                raise _bad_value(exc) from None
            page = _page(rows, total.n, skip, limit)
            page["meta"]["estimated"] = total.estimated  # total_doc estimated from a sample
            page["meta"]["total_label"] = total.label()
            # lacking a value the query needs: {what: n}, and which of those are estimated
            page["meta"]["left_out"] = {what: n.n for what, n in left_out.items()}
            page["meta"]["left_out_estimated"] = {what: n.estimated for what, n in left_out.items()}
            return page

        self.router.get(
            "/",
            tags=["candidates"],
            summary="Ranked candidates (the filters of `atomate2-gmt query`), paged",
            response_model=Response[CandidateRow],
            response_model_exclude_unset=True,
        )(self._search(ops, run))

        def get_by_key(
            key: str = PathParam(..., description="prediction_id, structure_key or source"),
        ) -> dict[str, Any]:
            try:
                return {"data": [service.get_candidate(store, key)]}
            except NotFoundError as exc:
                raise _not_found(exc) from None

        self.router.get(
            "/{key}/",
            tags=["candidates"],
            summary="One prediction document (the latest when several match)",
            response_model=Response[Document],
        )(get_by_key)

        def structure(
            key: str = PathParam(...),
            fmt: Literal["json", "cif"] = Query("json", alias="format"),
        ) -> Any:
            try:
                view = service.structure_view(service.get_candidate(store, key))
            except NotFoundError as exc:
                raise _not_found(exc) from None
            if fmt == "cif":
                return PlainTextResponse(view["cif"], media_type="chemical/x-cif")
            return {"data": [view]}

        self.router.get(
            "/{key}/structure",
            tags=["candidates"],
            summary="The structure: lattice and Cartesian sites (Å) for a viewer, or CIF",
        )(structure)

        def picture(
            key: str = PathParam(...),
            task: TaskName | None = Query(None, description="One task (default: all)."),
        ) -> FileResponse:
            try:
                doc = service.get_candidate(store, key)
                path = self.pictures.path(doc, task)
            except NotFoundError as exc:
                raise _not_found(exc) from None
            except ValueError as exc:
                raise _bad_value(exc) from None
            return FileResponse(path, media_type="image/png")

        self.router.get(
            "/{key}/picture.png",
            tags=["candidates"],
            summary="Directional tensor surfaces (PNG) as `atomate2-gmt show` draws them",
            response_class=FileResponse,
        )(picture)


class DFPTResource(_ReadResource):
    """``/dfpt/``: prediction vs DFPT (``atomate2-gmt report``) for all candidates or one."""

    def __init__(self, stores: WebStores) -> None:
        super().__init__(stores, ComparisonRow)

    def prepare_endpoint(self) -> None:
        """Routes: all comparisons, one candidate's DFPT result and comparison."""
        store = self.stores.candidates

        def comparisons(
            request: Request,
            task: TaskName | None = Query(None),
            include_rejected: bool = Query(False, description="Also results that failed checks."),
        ) -> dict[str, Any]:
            _check_params(request, [], ("task", "include_rejected"))
            states = ("accepted", "rejected") if include_rejected else ("accepted",)
            rows = self.stores.comparisons.rows(store, task, states)
            return {"data": rows, "meta": {"total_doc": len(rows)}}

        self.router.get(
            "/",
            tags=["dfpt"],
            summary="Predicted vs DFPT tensors: Fnorm, relative error, symmetry residuals",
            response_model=Response[ComparisonRow],
        )(comparisons)

        def one(key: str = PathParam(...)) -> dict[str, Any]:
            try:
                view = service.candidate_view(store, key)
            except NotFoundError as exc:
                raise _not_found(exc) from None
            if not view["dfpt"]:
                raise HTTPException(404, detail=f"the candidate {key!r} has no DFPT result")
            dfpt = dict(view["dfpt"])
            dfpt.pop("tensors", None)
            data = {
                "prediction_id": view["document"]["prediction_id"],
                "dfpt": dfpt,
                "comparison": view["comparison"],
                "not_compared": view["missing"],
            }
            return {"data": [data]}

        self.router.get(
            "/{key}/",
            tags=["dfpt"],
            summary="One candidate's DFPT result (state, code, reasons) and its comparison",
            response_model=Response[Document],
        )(one)


class TrainingResource(_ReadResource):
    """``/training/``: training documents written by DFPT feedback."""

    def __init__(self, stores: WebStores) -> None:
        super().__init__(stores, Document)

    def prepare_endpoint(self) -> None:
        """Routes: search (newest first, without structures), by record_id."""
        ops = [TrainingQuery(), self.pagination]
        store = self.stores.training

        def run(query: dict[str, Any]) -> dict[str, Any]:
            skip, limit = _pagination(query)
            try:
                rows, total = records.training_page(
                    store, **query["filters"], skip=skip, limit=limit
                )
            except ValueError as exc:
                raise _bad_value(exc) from None
            return _page(rows, total, skip, limit)

        self.router.get(
            "/",
            tags=["training"],
            summary="Training documents (DFPT feedback), newest first, paged",
            response_model=Response[Document],
        )(self._search(ops, run))

        def by_key(record_id: str = PathParam(...)) -> dict[str, Any]:
            try:
                return {"data": [records.training_document(store, record_id)]}
            except NotFoundError as exc:
                raise _not_found(exc) from None

        self.router.get(
            "/{record_id}/",
            tags=["training"],
            summary="One training document with its structure",
            response_model=Response[Document],
        )(by_key)


class ModelResource(_ReadResource):
    """``/models/``: the model registry."""

    def __init__(self, stores: WebStores) -> None:
        super().__init__(stores, ModelRow)

    def prepare_endpoint(self) -> None:
        """Routes: registered versions, one version."""
        store = self.stores.registry

        def versions(
            request: Request,
            task: TaskName | None = Query(None),
            promoted: bool | None = Query(None, description="Only promoted (or not promoted)."),
        ) -> dict[str, Any]:
            _check_params(request, [], ("task", "promoted"))
            rows = records.model_versions(store, task, promoted)
            return {"data": rows, "meta": {"total_doc": len(rows)}}

        self.router.get(
            "/",
            tags=["models"],
            summary="Registered model versions, per task",
            response_model=Response[ModelRow],
        )(versions)

        def one(key: str = PathParam(..., description="model_id or version label")) -> Any:
            try:
                return {"data": [records.model_document(store, key)]}
            except NotFoundError as exc:
                raise _not_found(exc) from None

        self.router.get(
            "/{key}/",
            tags=["models"],
            summary="One model version (metrics, provenance, promotion history)",
            response_model=Response[Document],
        )(one)


def build_resources(stores: WebStores, pictures: TensorPictures) -> dict[str, list[Resource]]:
    """The resources by URL prefix, for :class:`maggma.api.API`."""
    return {
        "candidates": [CandidateResource(stores, pictures)],
        "dfpt": [DFPTResource(stores)],
        "training": [TrainingResource(stores)],
        "models": [ModelResource(stores)],
    }

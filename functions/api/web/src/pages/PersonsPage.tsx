import type { JSX } from "preact";
import { useEffect, useState } from "preact/hooks";
import { api, problemText, type Schemas } from "../api/client";
import { formatSeconds, useI18n } from "../i18n";
import type { Rights } from "../session";
import { AuthImage } from "./PersonsImage";

type Person = Schemas["PersonOut"];
type Gallery = Schemas["GalleryOut"];
type Unassigned = Schemas["UnassignedOut"];

/** The case's persons (docs/persons.md): a card each with the best crop, counts and a gallery;
 * rename, merge and split for those who may correct (case.update: analysts, owners). */
export function PersonsPage(props: { caseId: string; rights: Rights }): JSX.Element {
  const { t } = useI18n();
  const [persons, setPersons] = useState<Person[] | null>(null);
  const [unassigned, setUnassigned] = useState<Unassigned[]>([]);
  const [error, setError] = useState<string | null>(null);
  const [status, setStatus] = useState<string>("");
  const [generation, setGeneration] = useState(0);
  const [blurred, setBlurred] = useState<Set<string>>(new Set());
  const [opened, setOpened] = useState<string | null>(null);
  // Corrections need case.update, the same right as uploading and analysing (docs/security.md).
  const canCorrect = props.rights.analyse;

  useEffect(() => {
    let live = true;
    const path = { case_id: props.caseId };
    void Promise.all([
      api.GET("/api/v1/cases/{case_id}/persons", { params: { path } }),
      api.GET("/api/v1/cases/{case_id}/persons/unassigned", { params: { path } }),
    ]).then(([listed, loose]) => {
      if (!live) return;
      if (listed.data) setPersons(listed.data.persons);
      else setError(problemText(listed.error, listed.response));
      if (loose.data) setUnassigned(loose.data);
      // Which frames (and so which crops) are served blurred: the frames of the persons' files.
      const mediaIds = new Set((listed.data?.persons ?? []).flatMap((person) => person.media.map((entry) => entry.media_id)));
      void Promise.all(
        [...mediaIds].map((mediaId) =>
          api.GET("/api/v1/cases/{case_id}/media/{media_id}/frames", {
            params: { path: { case_id: props.caseId, media_id: mediaId } },
          }),
        ),
      ).then((answers) => {
        if (!live) return;
        const ids = new Set<string>();
        for (const answer of answers) for (const frame of answer.data?.frames ?? []) if (frame.blurred) ids.add(frame.frame_id);
        setBlurred(ids);
      });
    });
    return () => {
      live = false;
    };
  }, [props.caseId, generation]);

  const reload = (message: string) => {
    setStatus(message);
    setGeneration((n) => n + 1);
  };

  if (error !== null)
    return (
      <p role="alert" class="error">
        {t.error(error)}
      </p>
    );
  if (persons === null) return <p class="muted">{t.loading}</p>;

  return (
    <div class="persons-page">
      <p role="status" class="muted persons-status">
        {status}
      </p>
      <h2>{t.personsHeading(persons.length)}</h2>
      {persons.length === 0 ? (
        <p>{t.noPersons}</p>
      ) : (
        <div class="persons-grid">
          {persons.map((person) => (
            <PersonCard
              key={person.id}
              caseId={props.caseId}
              person={person}
              others={persons.filter((other) => other.id !== person.id)}
              canCorrect={canCorrect}
              generation={generation}
              onChanged={reload}
              blurred={blurred}
              opened={opened === person.id}
              onOpen={(open) => setOpened(open ? person.id : null)}
            />
          ))}
        </div>
      )}
      <h2>{t.unassignedHeading(unassigned.length)}</h2>
      {unassigned.length === 0 ? (
        <p class="muted">{t.noUnassigned}</p>
      ) : (
        <ul class="persons-unassigned">
          {unassigned.map((track) => (
            <li key={track.id}>
              {track.crop_url && (
                <AuthImage src={track.crop_url} alt={t.cropOfTrack(track.label)} class="persons-thumb" />
              )}
              <span>
                <strong>{track.label}</strong> · {t.faces(track.faces)} · {t.quality(track.quality.toFixed(2))}
                <br />
                {t.unassignedReason}: {track.reason ?? t.noReasonGiven}
              </span>
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}

function PersonCard(props: {
  caseId: string;
  person: Person;
  others: Person[];
  canCorrect: boolean;
  generation: number;
  onChanged: (message: string) => void;
  blurred: Set<string>;
  opened: boolean;
  onOpen: (open: boolean) => void;
}): JSX.Element {
  const { t, lang } = useI18n();
  const { person } = props;
  // The best crop's frame (…/crops/{frame_id}/{name}): blurred while that frame is sensitive.
  const cropFrame = person.best_crop_url?.split("/").slice(-2, -1)[0] ?? null;
  const cropBlurred = cropFrame !== null && props.blurred.has(cropFrame);
  const [mode, setMode] = useState<"none" | "rename" | "merge">("none");
  const [name, setName] = useState(person.name ?? "");
  const [into, setInto] = useState(props.others[0]?.id ?? "");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [galleryOpen, setGalleryOpen] = useState(false);
  const path = { case_id: props.caseId, person_id: person.id };
  const headingId = `person-${person.id}`;

  const run = async (action: () => Promise<{ error?: unknown; response: Response; data?: unknown }>, done: string) => {
    setBusy(true);
    setError(null);
    try {
      const { data, error: failure, response } = await action();
      if (data === undefined) {
        setError(problemText(failure, response));
        return;
      }
      setMode("none");
      props.onChanged(done);
    } finally {
      setBusy(false);
    }
  };

  const rename = (event: Event) => {
    event.preventDefault();
    const value = name.trim();
    void run(
      () => api.PATCH("/api/v1/cases/{case_id}/persons/{person_id}", { params: { path }, body: { name: value || null } }),
      t.renamed(person.display_name, value || t.defaultName),
    );
  };

  const merge = (event: Event) => {
    event.preventDefault();
    if (!into) return;
    const target = props.others.find((other) => other.id === into);
    void run(
      () => api.POST("/api/v1/cases/{case_id}/persons/{person_id}/merge", { params: { path }, body: { into } }),
      t.merged(person.display_name, target?.display_name ?? into),
    );
  };

  return (
    <section role="article" aria-label={person.display_name} aria-labelledby={undefined} class="person-card">
      <div class="person-head">
        {person.best_crop_url ? (
          <AuthImage
            src={props.opened ? `${person.best_crop_url}?original=true` : person.best_crop_url}
            alt={t.bestCropOf(person.display_name)}
            class="person-crop"
          />
        ) : (
          <span class="image-placeholder person-crop">{t.noCrop}</span>
        )}
        <div>
          <h3 id={headingId}>{person.display_name}</h3>
          <p class="muted">
            {t.appearances(person.track_count)} · {t.inFiles(person.media_count)}
          </p>
          {person.origin === "split" && <p class="muted">{t.fromSplit}</p>}
          {cropBlurred && !props.opened && <p class="muted">{t.blurredNote}</p>}
          <ul class="person-media muted">
            {person.media.map((entry) => (
              <li key={entry.media_id}>
                {t.appearanceRange(entry.tracks, formatSeconds(lang, entry.first_s), formatSeconds(lang, entry.last_s))}
              </li>
            ))}
          </ul>
        </div>
      </div>

      <div class="actions">
        {cropBlurred && (
          <button type="button" onClick={() => props.onOpen(!props.opened)}>
            {props.opened ? t.closeOriginal(person.display_name) : t.openOriginal(person.display_name)}
          </button>
        )}
        <button type="button" aria-expanded={galleryOpen} onClick={() => setGalleryOpen(!galleryOpen)}>
          {galleryOpen ? t.hideGallery(person.display_name) : t.showGallery(person.display_name)}
        </button>
        {props.canCorrect && (
          <>
            <button type="button" aria-expanded={mode === "rename"} onClick={() => setMode(mode === "rename" ? "none" : "rename")}>
              {t.renamePerson(person.display_name)}
            </button>
            {props.others.length > 0 && (
              <button type="button" aria-expanded={mode === "merge"} onClick={() => setMode(mode === "merge" ? "none" : "merge")}>
                {t.mergePerson(person.display_name)}
              </button>
            )}
          </>
        )}
      </div>

      {props.canCorrect && mode === "rename" && (
        <form class="person-form" onSubmit={rename}>
          <label for={`name-${person.id}`}>{t.newName}</label>
          <input
            id={`name-${person.id}`}
            value={name}
            maxLength={200}
            onInput={(event) => setName(event.currentTarget.value)}
            autoFocus
          />
          <button type="submit" disabled={busy}>
            {t.saveName}
          </button>
        </form>
      )}
      {props.canCorrect && mode === "merge" && (
        <form class="person-form" onSubmit={merge}>
          <label for={`into-${person.id}`}>{t.mergeInto}</label>
          <select id={`into-${person.id}`} value={into} onChange={(event) => setInto(event.currentTarget.value)}>
            {props.others.map((other) => (
              <option key={other.id} value={other.id}>
                {other.display_name}
              </option>
            ))}
          </select>
          <button type="submit" disabled={busy || !into}>
            {t.merge}
          </button>
        </form>
      )}
      {error !== null && (
        <p role="alert" class="error">
          {error}
        </p>
      )}
      {galleryOpen && (
        <PersonGallery
          caseId={props.caseId}
          person={person}
          canCorrect={props.canCorrect}
          generation={props.generation}
          onChanged={props.onChanged}
        />
      )}
    </section>
  );
}

function PersonGallery(props: {
  caseId: string;
  person: Person;
  canCorrect: boolean;
  generation: number;
  onChanged: (message: string) => void;
}): JSX.Element {
  const { t, lang } = useI18n();
  const [gallery, setGallery] = useState<Gallery | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [selected, setSelected] = useState<Set<string>>(new Set());
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    let live = true;
    void api
      .GET("/api/v1/cases/{case_id}/persons/{person_id}", {
        params: { path: { case_id: props.caseId, person_id: props.person.id } },
      })
      .then(({ data, error: failure, response }) => {
        if (!live) return;
        if (data) setGallery(data);
        else setError(problemText(failure, response));
      });
    return () => {
      live = false;
    };
  }, [props.caseId, props.person.id, props.generation]);

  const toggle = (id: string) => {
    const next = new Set(selected);
    if (next.has(id)) next.delete(id);
    else next.add(id);
    setSelected(next);
  };

  const split = async () => {
    if (selected.size === 0) return;
    setBusy(true);
    setError(null);
    try {
      const { data, error: failure, response } = await api.POST("/api/v1/cases/{case_id}/persons/{person_id}/split", {
        params: { path: { case_id: props.caseId, person_id: props.person.id } },
        body: { track_ids: [...selected] },
      });
      if (!data) {
        setError(problemText(failure, response));
        return;
      }
      setSelected(new Set());
      props.onChanged(t.splitDone(props.person.display_name, data.display_name));
    } finally {
      setBusy(false);
    }
  };

  if (error !== null)
    return (
      <p role="alert" class="error">
        {error}
      </p>
    );
  if (gallery === null) return <p class="muted">{t.loading}</p>;
  return (
    <div class="person-gallery">
      <h4>{t.galleryOf(props.person.display_name)}</h4>
      <ul>
        {gallery.gallery.map((track) => (
          <li key={track.id}>
            {track.crop_url ? (
              <AuthImage src={track.crop_url} alt={t.cropOfTrack(track.label)} class="persons-thumb" />
            ) : (
              <span class="image-placeholder persons-thumb">{t.noCrop}</span>
            )}
            <div>
              {props.canCorrect ? (
                <label>
                  <input type="checkbox" checked={selected.has(track.id)} onChange={() => toggle(track.id)} />{" "}
                  <span class="visually-hidden">{t.selectTrack(track.label)}</span>
                  <strong aria-hidden="true">{track.label}</strong>
                </label>
              ) : (
                <strong>{track.label}</strong>
              )}
              <div class="muted">
                {formatSeconds(lang, track.first_s)}–{formatSeconds(lang, track.last_s)} · {t.faces(track.faces)} ·{" "}
                {t.quality(track.quality.toFixed(2))} · {t.linkedBy[track.linked_by] ?? track.linked_by}
              </div>
            </div>
          </li>
        ))}
      </ul>
      {props.canCorrect && gallery.gallery.length > 1 && (
        <button type="button" onClick={() => void split()} disabled={busy || selected.size === 0}>
          {t.splitSelected}
        </button>
      )}
    </div>
  );
}

// Every text of the interface, in English and German, from this one dictionary.
// The language is chosen in the header, kept in localStorage and set on <html lang>.
import { createContext } from "preact";
import { useContext } from "preact/hooks";

export type Lang = "en" | "de";
export const LANGS: readonly { value: Lang; label: string }[] = [
  { value: "en", label: "English" },
  { value: "de", label: "Deutsch" },
];

const en = {
  appName: "AIMA review workspace",
  skipToContent: "Skip to content",
  note: "Findings are indicators for human review, never verdicts: each one comes with a confidence and its evidence.",
  language: "Language",
  mainNav: "Main",
  cases: "Cases",
  signOut: "Sign out",
  signedInAs: (name: string, role: string) => `Signed in as ${name} (${role})`,
  loading: "Loading…",
  error: (detail: string) => `Something went wrong: ${detail}`,
  notFound: "Page not found",
  backToCases: "Back to the cases",

  signIn: "Sign in",
  username: "Username",
  password: "Password",
  signingIn: "Signing in…",
  sessionEnded: "Your session has ended. Please sign in again.",
  signInWith: (name: string) => `Sign in with ${name}`,
  or: "or",
  signInFailed: (reason: string) => `Sign-in failed: ${reason}`,
  takingOverSignIn: "Completing the sign-in…",

  caseName: "Case name",
  createCase: "Create case",
  newCase: "New case",
  yourCases: "Your cases",
  noCases: "No cases yet.",
  deleteCase: (name: string) => `Delete ${name}`,
  deleteCaseTitle: (name: string) => `Delete case ${name}?`,
  deleteCaseText:
    "This removes the case with its files, analysis results, reports, face and text vectors and documents; the audit log keeps a record. It cannot be undone.",
  deletePermanently: "Delete permanently",
  cancel: "Cancel",
  deleting: "Deleting…",
  caseRole: (role: string) => `your role: ${role}`,
  created: (when: string) => `created ${when}`,

  caseNav: "Case",
  files: "Files",
  jobs: "Jobs",
  reports: "Reports",
  persons: "Persons",
  findings: "Findings",
  search: "Search",
  // members
  members: "Members",
  membersHeading: "Members of the case",
  memberName: "Member",
  memberId: "User id",
  memberRole: "Role",
  memberSince: "Since",
  memberActions: "Actions",
  caseRoles: { owner: "owner", analyst: "analyst", viewer: "viewer" } as Record<string, string>,
  roleOf: (name: string) => `Role of ${name}`,
  changeRole: (name: string) => `Change role of ${name}`,
  removeMember: (name: string) => `Remove ${name}`,
  noMembers: "This case has no members.",
  yourUserId: "Your user id:",
  shareHeading: "Share the case",
  shareUser: "User",
  chooseUser: "Choose a user",
  shareUserId: "User id",
  shareUserIdHint: "Only administrators can list the users: ask the person for their user id (this page shows it to them as “Your user id”).",
  shareRole: "Role",
  share: "Share",
  mayNotShare: "Only the case's owners and administrators can change its members.",
  shared: (name: string, role: string) => `Shared with ${name} as ${role}.`,
  roleChanged: (name: string, role: string) => `${name} is now ${role}.`,
  memberRemoved: (name: string) => `${name} is no longer a member.`,
  // end of members
  notBuiltYet: "This page is not built yet.",

  mediaList: "Files of the case",
  noMedia: "No files in this case yet.",
  filename: "File name",
  kind: "Kind",
  size: "Size",
  status: "Status",
  upload: "Upload",
  chooseFiles: "Choose files",
  dropFiles: "Drop files here",
  dropHint: "Drop files here, or choose them with the button. Uploads resume after an interruption.",
  uploadProgress: (name: string) => `Upload progress of ${name}`,
  uploading: "Uploading…",
  waiting: "Waiting",
  uploaded: "Uploaded",
  duplicateOf: (name: string) => `Duplicate of ${name}`,
  refused: (detail: string) => `Refused: ${detail}`,
  uploadsHeading: "This batch",
  analyse: "Analyse uploaded files",
  analysing: "Submitting the job…",
  noUploadRight: "Your role in this case does not allow uploads.",

  job: (short: string) => `Job ${short}`,
  noJobs: "No jobs in this case yet.",
  phase: "Phase",
  progress: "Progress",
  priority: "Priority",
  createdAt: "Created",
  eta: (seconds: string) => `Model time left: about ${seconds}`,
  stepsTable: (files: number) => `Files per step and state (${files} ${files === 1 ? "file" : "files"})`,
  step: "Step",
  estimate: "Estimate",
  estimateText: (model: string, wall: string, cost: string) =>
    `model time ${model}, wall time ${wall}, cost ${cost}`,
  estimateBasis: (basis: string, profile: string) => `basis: ${basis}, GPU profile: ${profile}`,
  approve: "Approve",
  cancelJob: "Cancel job",
  resumeJob: "Resume job",
  reason: (text: string) => `Reason: ${text}`,
  liveUpdates: "Live updates",
  polling: "Updated every 2 seconds",
  fileSteps: "Steps per file",
  fileStepsTable: (job: string) => `Steps per file of ${job}`,
  file: "File",
  stepQueued: "queued",
  stepAbsent: "not planned",
  stepState: (state: string, reason: string | null) => (reason ? `${state}: ${reason}` : state),
  openReport: (version: number) => `Open report version ${version}`,

  versions: "Versions",
  version: (n: number) => `Version ${n}`,
  noReports: "No report yet: it is built when a job has finished.",
  summary: "Summary",
  partial: "Partial report: some steps did not finish.",
  context: "Context",
  indicators: "Indicators for review",
  noIndicators: "No indicators.",
  confidence: (pct: string) => `confidence ${pct}`,
  model: (name: string) => `model ${name}`,
  review: (decision: string) => `review: ${decision}`,
  unreviewed: "not reviewed yet",
  gaps: "Gaps",
  noGaps: "No gaps.",
  exportPdf: "Export PDF",
  exportJson: "Export JSON",
  exporting: "Preparing the download…",
  reportMeta: (created: string, files: number, persons: number) =>
    `built ${created}; ${files} files, ${persons} persons`,

  phases: {
    Queued: "Queued",
    Estimating: "Estimating",
    AwaitingApproval: "Awaiting approval",
    Running: "Running",
    Succeeded: "Succeeded",
    PartiallySucceeded: "Partially succeeded",
    Failed: "Failed",
    Cancelled: "Cancelled",
  } as Record<string, string>,
  states: {
    pending: "pending",
    running: "running",
    succeeded: "succeeded",
    failed: "failed",
    not_run: "not run",
    cancelled: "cancelled",
  } as Record<string, string>,
  decisions: {
    confirmed: "confirmed",
    rejected: "rejected",
    unclear: "unclear",
    unreviewed: "not reviewed yet",
  } as Record<string, string>,
  // persons and findings
  imageMissing: "Image not available",
  personsHeading: (n: number) => (n === 1 ? "1 person" : `${n} persons`),
  noPersons: "No persons in this case yet.",
  unassignedHeading: (n: number) => (n === 1 ? "1 unassigned track" : `${n} unassigned tracks`),
  noUnassigned: "Every face track belongs to a person.",
  unassignedReason: "Reason",
  noReasonGiven: "no reason given",
  cropOfTrack: (label: string) => `Crop of track ${label}`,
  faces: (n: number) => (n === 1 ? "1 face" : `${n} faces`),
  quality: (q: string) => `quality ${q}`,
  renamed: (before: string, after: string) => `${before} is now called ${after}.`,
  defaultName: "its default name",
  merged: (from: string, into: string) => `${from} was merged into ${into}.`,
  bestCropOf: (name: string) => `Best crop of ${name}`,
  noCrop: "no image",
  appearances: (n: number) => (n === 1 ? "1 appearance" : `${n} appearances`),
  inFiles: (n: number) => (n === 1 ? "in 1 file" : `in ${n} files`),
  fromSplit: "made by a split",
  appearanceRange: (tracks: number, first: string, last: string) =>
    `${tracks === 1 ? "1 track" : `${tracks} tracks`}, ${first} to ${last}`,
  showGallery: (name: string) => `Show crops of ${name}`,
  hideGallery: (name: string) => `Hide crops of ${name}`,
  galleryOf: (name: string) => `Crops of ${name}`,
  renamePerson: (name: string) => `Rename ${name}`,
  newName: "New name",
  saveName: "Save name",
  mergePerson: (name: string) => `Merge ${name} into…`,
  mergeInto: "Merge into",
  merge: "Merge",
  selectTrack: (label: string) => `Select ${label}`,
  splitSelected: "Split selected tracks",
  splitDone: (from: string, made: string) => `The selected tracks of ${from} are now ${made}.`,
  linkedBy: { analysis: "linked by the analysis", previous: "kept from the previous version", user: "linked by a user" } as Record<string, string>,
  findingsHeading: (n: number) => (n === 1 ? "1 finding" : `${n} findings`),
  noFindings: "No findings in this case yet.",
  producedBy: (step: string) => `produced by the step ${step}`,
  inFile: (name: string) => `in ${name}`,
  indicatorKey: (key: string) => `indicator ${key.slice(0, 12)}`,
  reviewState: (state: string) => `Review: ${state}`,
  evidence: "Evidence",
  noEvidence: "No evidence stored.",
  frameName: (file: string, at: string) => `frame of ${file} at ${at}`,
  originalOf: (name: string) => `Original of ${name}`,
  blurredFrame: (name: string) => `Blurred ${name}`,
  blurredNote: "Shown blurred: this image may be sensitive.",
  openOriginal: (name: string) => `Open original of ${name}`,
  closeOriginal: (name: string) => `Blur ${name} again`,
  playAt: (file: string, range: string) => `Play ${file} at ${range}`,
  decision: "Decision",
  decisionFor: (label: string) => `Decision on ${label}`,
  decisionButtons: { confirmed: "Confirm", rejected: "Reject", unclear: "Unclear" } as Record<string, string>,
  reasonLabel: "Reason",
  saveDecision: "Save decision",
  chooseDecision: "Choose Confirm, Reject or Unclear first.",
  reasonRequired: "Please give a reason.",
  decisionSaved: (decision: string) => `Saved: ${decision}.`,
  // end of persons and findings
  // media and search
  mediaNotFound: "This file is not in the case.",
  mediaNoTranscript: "No transcript for this file.",
  mediaUnknownSpeaker: "unknown speaker",
  mediaPlayerOf: (name: string) => `Player of ${name}`,
  mediaImageOf: (name: string) => `Image ${name}`,
  mediaClockNote: "This browser cannot play the file's format: the player runs silently over the file's length, and the transcript and timeline follow it.",
  mediaSensitiveNote: "This file may be sensitive: its picture stays blurred and it is not played until you open it. Opening it is recorded in the audit log.",
  mediaOpenPlayback: (name: string) => `Open and play ${name}`,
  mediaOpenedNote: "Opened on your request (recorded in the audit log).",
  mediaPosition: (time: string) => `Position: ${time}.`,
  mediaDownloadVtt: "Download transcript (WebVTT)",
  mediaTranscript: "Transcript",
  mediaTranscriptLabel: "Transcript",
  mediaUnintelligible: "(unintelligible)",
  mediaTimeline: "Timeline",
  mediaNoTimeline: "No timeline entries for this file in the latest report.",
  mediaKinds: {
    file_created: "file created",
    speech: "speech",
    unintelligible: "unintelligible",
    appearance: "person",
    posture: "posture",
    indicator: "indicator",
    text: "text in frame",
    scene: "scene",
  } as Record<string, string>,
  searchLabel: "Search the case",
  searchButton: "Search",
  searchResults: (count: number) => (count === 1 ? "1 result" : `${count} results`),
  searchNothing: "Nothing found.",
  searchOpenAt: (name: string, time: string) => `${name} at ${time}`,
  searchSpeech: "speech",
  searchOcr: "text in frame",
  // end of media and search
};

export type Dict = typeof en;

const de: Dict = {
  appName: "AIMA Prüfarbeitsplatz",
  skipToContent: "Zum Inhalt springen",
  note: "Befunde sind Hinweise für die menschliche Prüfung, keine Urteile: jeder kommt mit einer Konfidenz und seinen Belegen.",
  language: "Sprache",
  mainNav: "Hauptnavigation",
  cases: "Fälle",
  signOut: "Abmelden",
  signedInAs: (name, role) => `Angemeldet als ${name} (${role})`,
  loading: "Wird geladen…",
  error: (detail) => `Etwas ist schiefgegangen: ${detail}`,
  notFound: "Seite nicht gefunden",
  backToCases: "Zurück zu den Fällen",

  signIn: "Anmelden",
  username: "Benutzername",
  password: "Passwort",
  signingIn: "Anmeldung läuft…",
  sessionEnded: "Ihre Sitzung ist abgelaufen. Bitte melden Sie sich erneut an.",
  signInWith: (name) => `Anmelden mit ${name}`,
  or: "oder",
  signInFailed: (reason) => `Anmeldung fehlgeschlagen: ${reason}`,
  takingOverSignIn: "Anmeldung wird abgeschlossen…",

  caseName: "Name des Falls",
  createCase: "Fall anlegen",
  newCase: "Neuer Fall",
  yourCases: "Ihre Fälle",
  noCases: "Noch keine Fälle.",
  deleteCase: (name) => `${name} löschen`,
  deleteCaseTitle: (name) => `Fall ${name} löschen?`,
  deleteCaseText:
    "Damit werden der Fall und seine Dateien, Analyseergebnisse, Berichte, Gesichts- und Textvektoren und Dokumente entfernt; das Prüfprotokoll behält einen Eintrag. Das lässt sich nicht rückgängig machen.",
  deletePermanently: "Endgültig löschen",
  cancel: "Abbrechen",
  deleting: "Wird gelöscht…",
  caseRole: (role) => `Ihre Rolle: ${role}`,
  created: (when) => `angelegt ${when}`,

  caseNav: "Fall",
  files: "Dateien",
  jobs: "Aufträge",
  reports: "Berichte",
  persons: "Personen",
  findings: "Befunde",
  search: "Suche",
  // members
  members: "Mitglieder",
  membersHeading: "Mitglieder des Falls",
  memberName: "Mitglied",
  memberId: "Benutzer-ID",
  memberRole: "Rolle",
  memberSince: "Seit",
  memberActions: "Aktionen",
  caseRoles: { owner: "Eigentümer", analyst: "Analyst", viewer: "Betrachter" } as Record<string, string>,
  roleOf: (name: string) => `Rolle von ${name}`,
  changeRole: (name: string) => `Rolle von ${name} ändern`,
  removeMember: (name: string) => `${name} entfernen`,
  noMembers: "Dieser Fall hat keine Mitglieder.",
  yourUserId: "Ihre Benutzer-ID:",
  shareHeading: "Fall teilen",
  shareUser: "Benutzer",
  chooseUser: "Benutzer wählen",
  shareUserId: "Benutzer-ID",
  shareUserIdHint: "Nur Administratoren können die Benutzer auflisten: Fragen Sie die Person nach ihrer Benutzer-ID (diese Seite zeigt sie ihr als „Ihre Benutzer-ID“).",
  shareRole: "Rolle",
  share: "Teilen",
  mayNotShare: "Nur die Eigentümer des Falls und Administratoren können seine Mitglieder ändern.",
  shared: (name: string, role: string) => `Mit ${name} als ${role} geteilt.`,
  roleChanged: (name: string, role: string) => `${name} ist jetzt ${role}.`,
  memberRemoved: (name: string) => `${name} ist kein Mitglied mehr.`,
  // end of members
  notBuiltYet: "Diese Seite ist noch nicht gebaut.",

  mediaList: "Dateien des Falls",
  noMedia: "Noch keine Dateien in diesem Fall.",
  filename: "Dateiname",
  kind: "Art",
  size: "Größe",
  status: "Status",
  upload: "Hochladen",
  chooseFiles: "Dateien wählen",
  dropFiles: "Dateien hier ablegen",
  dropHint:
    "Dateien hier ablegen oder mit der Schaltfläche wählen. Unterbrochene Uploads werden fortgesetzt.",
  uploadProgress: (name) => `Upload-Fortschritt von ${name}`,
  uploading: "Wird hochgeladen…",
  waiting: "Wartet",
  uploaded: "Hochgeladen",
  duplicateOf: (name) => `Duplikat von ${name}`,
  refused: (detail) => `Abgelehnt: ${detail}`,
  uploadsHeading: "Dieser Stapel",
  analyse: "Hochgeladene Dateien analysieren",
  analysing: "Auftrag wird übermittelt…",
  noUploadRight: "Ihre Rolle in diesem Fall erlaubt keine Uploads.",

  job: (short) => `Auftrag ${short}`,
  noJobs: "Noch keine Aufträge in diesem Fall.",
  phase: "Phase",
  progress: "Fortschritt",
  priority: "Priorität",
  createdAt: "Angelegt",
  eta: (seconds) => `Verbleibende Modellzeit: etwa ${seconds}`,
  stepsTable: (files) => `Dateien je Schritt und Zustand (${files} ${files === 1 ? "Datei" : "Dateien"})`,
  step: "Schritt",
  estimate: "Schätzung",
  estimateText: (model, wall, cost) => `Modellzeit ${model}, Laufzeit ${wall}, Kosten ${cost}`,
  estimateBasis: (basis, profile) => `Grundlage: ${basis}, GPU-Profil: ${profile}`,
  approve: "Freigeben",
  cancelJob: "Auftrag abbrechen",
  resumeJob: "Auftrag fortsetzen",
  reason: (text) => `Grund: ${text}`,
  liveUpdates: "Live-Aktualisierung",
  polling: "Alle 2 Sekunden aktualisiert",
  fileSteps: "Schritte je Datei",
  fileStepsTable: (job) => `Schritte je Datei von ${job}`,
  file: "Datei",
  stepQueued: "in der Warteschlange",
  stepAbsent: "nicht geplant",
  stepState: (state, reason) => (reason ? `${state}: ${reason}` : state),
  openReport: (version) => `Bericht Version ${version} öffnen`,

  versions: "Versionen",
  version: (n) => `Version ${n}`,
  noReports: "Noch kein Bericht: er entsteht, wenn ein Auftrag beendet ist.",
  summary: "Zusammenfassung",
  partial: "Teilbericht: einige Schritte wurden nicht beendet.",
  context: "Kontext",
  indicators: "Hinweise zur Prüfung",
  noIndicators: "Keine Hinweise.",
  confidence: (pct) => `Konfidenz ${pct}`,
  model: (name) => `Modell ${name}`,
  review: (decision) => `Prüfung: ${decision}`,
  unreviewed: "noch nicht geprüft",
  gaps: "Lücken",
  noGaps: "Keine Lücken.",
  exportPdf: "PDF exportieren",
  exportJson: "JSON exportieren",
  exporting: "Download wird vorbereitet…",
  reportMeta: (created, files, persons) => `erstellt ${created}; ${files} Dateien, ${persons} Personen`,

  phases: {
    Queued: "In der Warteschlange",
    Estimating: "Wird geschätzt",
    AwaitingApproval: "Wartet auf Freigabe",
    Running: "Läuft",
    Succeeded: "Erfolgreich",
    PartiallySucceeded: "Teilweise erfolgreich",
    Failed: "Fehlgeschlagen",
    Cancelled: "Abgebrochen",
  },
  states: {
    pending: "wartend",
    running: "läuft",
    succeeded: "erfolgreich",
    failed: "fehlgeschlagen",
    not_run: "nicht ausgeführt",
    cancelled: "abgebrochen",
  },
  decisions: {
    confirmed: "bestätigt",
    rejected: "verworfen",
    unclear: "unklar",
    unreviewed: "noch nicht geprüft",
  },
  // persons and findings
  imageMissing: "Bild nicht verfügbar",
  personsHeading: (n) => (n === 1 ? "1 Person" : `${n} Personen`),
  noPersons: "Noch keine Personen in diesem Fall.",
  unassignedHeading: (n) => (n === 1 ? "1 nicht zugeordnete Spur" : `${n} nicht zugeordnete Spuren`),
  noUnassigned: "Jede Gesichtsspur gehört zu einer Person.",
  unassignedReason: "Grund",
  noReasonGiven: "kein Grund angegeben",
  cropOfTrack: (label) => `Ausschnitt der Spur ${label}`,
  faces: (n) => (n === 1 ? "1 Gesicht" : `${n} Gesichter`),
  quality: (q) => `Qualität ${q}`,
  renamed: (before, after) => `${before} heißt jetzt ${after}.`,
  defaultName: "wieder wie vorgegeben",
  merged: (from, into) => `${from} wurde mit ${into} zusammengeführt.`,
  bestCropOf: (name) => `Bester Ausschnitt von ${name}`,
  noCrop: "kein Bild",
  appearances: (n) => (n === 1 ? "1 Auftritt" : `${n} Auftritte`),
  inFiles: (n) => (n === 1 ? "in 1 Datei" : `in ${n} Dateien`),
  fromSplit: "durch Aufteilen entstanden",
  appearanceRange: (tracks, first, last) => `${tracks === 1 ? "1 Spur" : `${tracks} Spuren`}, ${first} bis ${last}`,
  showGallery: (name) => `Ausschnitte von ${name} zeigen`,
  hideGallery: (name) => `Ausschnitte von ${name} ausblenden`,
  galleryOf: (name) => `Ausschnitte von ${name}`,
  renamePerson: (name) => `${name} umbenennen`,
  newName: "Neuer Name",
  saveName: "Namen speichern",
  mergePerson: (name) => `${name} zusammenführen mit…`,
  mergeInto: "Zusammenführen mit",
  merge: "Zusammenführen",
  selectTrack: (label) => `${label} auswählen`,
  splitSelected: "Ausgewählte Spuren abtrennen",
  splitDone: (from, made) => `Die ausgewählten Spuren von ${from} sind jetzt ${made}.`,
  linkedBy: { analysis: "von der Analyse zugeordnet", previous: "aus der vorigen Version übernommen", user: "von einer Person zugeordnet" },
  findingsHeading: (n) => (n === 1 ? "1 Befund" : `${n} Befunde`),
  noFindings: "Noch keine Befunde in diesem Fall.",
  producedBy: (step) => `erzeugt vom Schritt ${step}`,
  inFile: (name) => `in ${name}`,
  indicatorKey: (key) => `Hinweis ${key.slice(0, 12)}`,
  reviewState: (state) => `Prüfung: ${state}`,
  evidence: "Belege",
  noEvidence: "Keine Belege gespeichert.",
  frameName: (file, at) => `Bild aus ${file} bei ${at}`,
  originalOf: (name) => `Original: ${name}`,
  blurredFrame: (name) => `Unscharf: ${name}`,
  blurredNote: "Unscharf gezeigt: Dieses Bild kann belastend sein.",
  openOriginal: (name) => `Original öffnen: ${name}`,
  closeOriginal: (name) => `${name} wieder unscharf zeigen`,
  playAt: (file, range) => `${file} bei ${range} abspielen`,
  decision: "Entscheidung",
  decisionFor: (label) => `Entscheidung zu ${label}`,
  decisionButtons: { confirmed: "Bestätigen", rejected: "Verwerfen", unclear: "Unklar" },
  reasonLabel: "Begründung",
  saveDecision: "Entscheidung speichern",
  chooseDecision: "Bitte zuerst Bestätigen, Verwerfen oder Unklar wählen.",
  reasonRequired: "Bitte eine Begründung angeben.",
  decisionSaved: (decision) => `Gespeichert: ${decision}.`,
  // end of persons and findings
  // media and search
  mediaNotFound: "Diese Datei gehört nicht zum Fall.",
  mediaNoTranscript: "Kein Transkript für diese Datei.",
  mediaUnknownSpeaker: "unbekannter Sprecher",
  mediaPlayerOf: (name: string) => `Player von ${name}`,
  mediaImageOf: (name: string) => `Bild ${name}`,
  mediaClockNote: "Dieser Browser kann das Format der Datei nicht abspielen: Der Player läuft stumm über die Länge der Datei, Transkript und Zeitleiste folgen ihm.",
  mediaSensitiveNote: "Diese Datei ist möglicherweise sensibel: Ihr Bild bleibt unscharf, und sie wird erst abgespielt, wenn Sie sie öffnen. Das Öffnen wird im Audit-Log festgehalten.",
  mediaOpenPlayback: (name: string) => `${name} öffnen und abspielen`,
  mediaOpenedNote: "Auf Ihren Wunsch geöffnet (im Audit-Log festgehalten).",
  mediaPosition: (time: string) => `Position: ${time}.`,
  mediaDownloadVtt: "Transkript herunterladen (WebVTT)",
  mediaTranscript: "Transkript",
  mediaTranscriptLabel: "Transkript",
  mediaUnintelligible: "(unverständlich)",
  mediaTimeline: "Zeitleiste",
  mediaNoTimeline: "Keine Einträge der Zeitleiste für diese Datei im neuesten Bericht.",
  mediaKinds: {
    file_created: "Datei erstellt",
    speech: "Sprache",
    unintelligible: "unverständlich",
    appearance: "Person",
    posture: "Haltung",
    indicator: "Indikator",
    text: "Text im Bild",
    scene: "Szene",
  } as Record<string, string>,
  searchLabel: "Fall durchsuchen",
  searchButton: "Suchen",
  searchResults: (count: number) => (count === 1 ? "1 Treffer" : `${count} Treffer`),
  searchNothing: "Nichts gefunden.",
  searchOpenAt: (name: string, time: string) => `${name} bei ${time}`,
  searchSpeech: "Sprache",
  searchOcr: "Text im Bild",
  // end of media and search
};

export const DICTIONARIES: Record<Lang, Dict> = { en, de };

const STORAGE_KEY = "aima.lang";

/** The language kept in localStorage, else the browser's if German, else English. */
export function initialLang(): Lang {
  try {
    const kept = localStorage.getItem(STORAGE_KEY);
    if (kept === "en" || kept === "de") return kept;
  } catch {
    /* storage unavailable */
  }
  return navigator.language.toLowerCase().startsWith("de") ? "de" : "en";
}

/** Keeps the choice and sets <html lang>. */
export function applyLang(lang: Lang): void {
  try {
    localStorage.setItem(STORAGE_KEY, lang);
  } catch {
    /* storage unavailable: the choice lasts for this page */
  }
  document.documentElement.lang = lang;
}

export interface I18n {
  lang: Lang;
  t: Dict;
  setLang: (lang: Lang) => void;
}

export const I18nContext = createContext<I18n>({ lang: "en", t: en, setLang: () => undefined });

export function useI18n(): I18n {
  return useContext(I18nContext);
}

/** Phase names as the API spells them, shown translated but keeping the API's name in English. */
export function phaseText(t: Dict, phase: string): string {
  return t.phases[phase] ?? phase;
}

export function formatBytes(lang: Lang, bytes: number): string {
  const units = ["B", "kB", "MB", "GB", "TB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  const digits = unit === 0 ? 0 : 1;
  return `${value.toLocaleString(lang, { maximumFractionDigits: digits })} ${units[unit]}`;
}

export function formatDate(lang: Lang, iso: string): string {
  const date = new Date(iso);
  return Number.isNaN(date.getTime())
    ? iso
    : date.toLocaleString(lang, { dateStyle: "medium", timeStyle: "short" });
}

export function formatSeconds(lang: Lang, seconds: number): string {
  if (seconds < 90) return `${Math.round(seconds).toLocaleString(lang)} s`;
  if (seconds < 5400) return `${(seconds / 60).toLocaleString(lang, { maximumFractionDigits: 1 })} min`;
  return `${(seconds / 3600).toLocaleString(lang, { maximumFractionDigits: 1 })} h`;
}

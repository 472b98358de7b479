import type { JSX } from "preact";
import { useI18n } from "../i18n";
import type { Rights } from "../session";

/** Not built yet: one file with its player, the transcript following playback and the timeline (docs/web.md). */
export function MediaPage(_props: { caseId: string; mediaId: string; at: number | null; rights: Rights }): JSX.Element {
  const { t } = useI18n();
  return <p class="muted">{t.notBuiltYet}</p>;
}
